//! Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`) and Docker's back-off
//! between restarts: 100 ms, doubling after each quick exit, back to 100 ms once a container
//! stayed up for 10 s, never more than a minute.

use std::time::Duration;

use berth_api::vocab::RestartPolicy;

/// First delay before a restart.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A container that stayed up this long resets the back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether a container that just exited with `exit_code` should be restarted.
/// `restart_count` counts the restarts done so far.
pub fn should_restart(
    policy: RestartPolicy,
    exit_code: i64,
    manually_stopped: bool,
    restart_count: i64,
) -> bool {
    if manually_stopped {
        return false;
    }
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure(max) => exit_code != 0 && (max == 0 || restart_count < max),
    }
}

/// Whether the container comes back when the daemon starts.
pub fn restart_on_daemon_start(
    policy: RestartPolicy,
    exit_code: i64,
    manually_stopped: bool,
    restart_count: i64,
) -> bool {
    match policy {
        RestartPolicy::Always => true,
        _ => should_restart(policy, exit_code, manually_stopped, restart_count),
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

    #[test]
    fn restart_decisions() {
        use RestartPolicy::*;
        assert!(!should_restart(No, 1, false, 0));
        assert!(should_restart(Always, 0, false, 5));
        assert!(!should_restart(Always, 0, true, 0));
        assert!(!should_restart(OnFailure(0), 0, false, 0));
        assert!(should_restart(OnFailure(2), 1, false, 1));
        assert!(!should_restart(OnFailure(2), 1, false, 2));
        assert!(should_restart(OnFailure(0), 1, false, 100));
        assert!(restart_on_daemon_start(Always, 0, true, 0));
        assert!(!restart_on_daemon_start(UnlessStopped, 0, true, 0));
        assert!(restart_on_daemon_start(UnlessStopped, 0, false, 0));
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
