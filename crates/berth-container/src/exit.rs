//! How a container's end is written into its record, decided in one place for the two paths
//! that learn of it: the watcher of a live shim (its `Wait` answers, or its connection drops)
//! and adoption at daemon start (the shim is gone; `exit.json` says how the container ended,
//! or nothing does).

use berth_runtime::{ExitRecord, RuntimeError};
use chrono::{DateTime, Utc};

/// The exit code recorded for a container whose shim died without writing `exit.json`: the
/// daemon SIGKILLs what is left in the container's cgroup, so the container died of SIGKILL.
pub const SHIM_DIED_EXIT_CODE: i64 = 137;

/// `State.Error` for a container whose shim died without writing `exit.json`.
pub const SHIM_DIED_ERROR: &str = "shim exited unexpectedly";

/// A container's end, as its record's `State` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// `State.ExitCode`.
    pub code: i64,
    /// `State.FinishedAt`.
    pub finished: DateTime<Utc>,
    /// `State.OOMKilled`.
    pub oom: bool,
    /// `State.Error`: empty after a normal exit.
    pub error: String,
}

impl Ended {
    /// The end of a container from its shim's report: the exit record, or why there is none.
    /// A shim that died without recording the exit ([`RuntimeError::ShimGone`]; at adoption,
    /// a missing `exit.json`) gives exit 137 with the error `shim exited unexpectedly`,
    /// whichever path noticed; any other failure to learn the exit gives 255 and its message.
    pub fn from_shim(report: Result<ExitRecord, RuntimeError>) -> Ended {
        match report {
            Ok(e) => Ended {
                code: i64::from(e.exit_code),
                finished: DateTime::parse_from_rfc3339(&e.finished_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now()),
                oom: e.oom_killed,
                error: String::new(),
            },
            Err(RuntimeError::ShimGone { .. }) => Ended {
                code: SHIM_DIED_EXIT_CODE,
                finished: Utc::now(),
                oom: false,
                error: SHIM_DIED_ERROR.to_string(),
            },
            Err(e) => Ended {
                code: 255,
                finished: Utc::now(),
                oom: false,
                error: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_recorded_exit_is_taken_as_recorded() {
        let e = Ended::from_shim(Ok(ExitRecord {
            exit_code: 3,
            signal: None,
            finished_at: "2026-01-02T03:04:05.000000006Z".into(),
            oom_killed: true,
            execs: Default::default(),
        }));
        assert_eq!(e.code, 3);
        assert!(e.oom);
        assert_eq!(e.error, "");
        assert_eq!(
            e.finished.to_rfc3339(),
            "2026-01-02T03:04:05.000000006+00:00"
        );
    }

    #[test]
    fn a_dead_shim_is_137_with_its_error() {
        let e = Ended::from_shim(Err(RuntimeError::ShimGone {
            bundle: PathBuf::from("/run/berth/containers/x"),
        }));
        assert_eq!((e.code, e.oom), (137, false));
        assert_eq!(e.error, "shim exited unexpectedly");
    }
}
