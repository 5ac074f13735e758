//! The human texts `docker ps` shows: `Up 5 seconds`, `Exited (0) 3 minutes ago`, and the
//! `Command` column.

use std::time::Duration;

/// Docker's human duration (`Less than a second`, `About a minute`, `3 hours`, `2 weeks`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (d.as_secs_f64() / 3600.0 / 24.0 / 365.0) as u64)
}

/// What a container's state looks like to [`status_text`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusView<'a> {
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub removing: bool,
    pub dead: bool,
    pub exit_code: i64,
    /// Time since the container started (`None`: never started).
    pub since_start: Option<Duration>,
    /// Time since it finished (`None`: never finished).
    pub since_finish: Option<Duration>,
    /// Health status, when the container has a health check.
    pub health: Option<&'a str>,
}

/// Docker's `Status` column text.
pub fn status_text(v: &StatusView<'_>) -> String {
    if v.running {
        let up = human_duration(v.since_start.unwrap_or_default());
        if v.paused {
            return format!("Up {up} (Paused)");
        }
        if v.restarting {
            let ago = human_duration(v.since_finish.unwrap_or_default());
            return format!("Restarting ({}) {ago} ago", v.exit_code);
        }
        return match v.health {
            Some(h) if h != "none" && !h.is_empty() => {
                let h = if h == "starting" {
                    "health: starting"
                } else {
                    h
                };
                format!("Up {up} ({h})")
            }
            _ => format!("Up {up}"),
        };
    }
    if v.removing {
        return "Removal In Progress".into();
    }
    if v.dead {
        return "Dead".into();
    }
    if v.since_start.is_none() {
        return "Created".into();
    }
    let Some(finished) = v.since_finish else {
        return String::new();
    };
    format!("Exited ({}) {} ago", v.exit_code, human_duration(finished))
}

/// The `Command` of a `ps` row: the path and the arguments, arguments containing a space
/// wrapped in single quotes.
pub fn command_text(path: &str, args: &[String]) -> String {
    let mut out = path.to_string();
    for a in args {
        out.push(' ');
        if a.contains(' ') {
            out.push('\'');
            out.push_str(a);
            out.push('\'');
        } else {
            out.push_str(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(5)), "5 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3 * 3600)), "3 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn status_texts() {
        let s = Duration::from_secs;
        let created = StatusView::default();
        assert_eq!(status_text(&created), "Created");
        let up = StatusView {
            running: true,
            since_start: Some(s(5)),
            ..Default::default()
        };
        assert_eq!(status_text(&up), "Up 5 seconds");
        let paused = StatusView {
            paused: true,
            since_start: Some(s(120)),
            ..up
        };
        assert_eq!(status_text(&paused), "Up 2 minutes (Paused)");
        let exited = StatusView {
            exit_code: 3,
            since_start: Some(s(10)),
            since_finish: Some(s(3)),
            ..Default::default()
        };
        assert_eq!(status_text(&exited), "Exited (3) 3 seconds ago");
        let restarting = StatusView {
            running: true,
            restarting: true,
            exit_code: 1,
            since_start: Some(s(2)),
            since_finish: Some(s(1)),
            ..Default::default()
        };
        assert_eq!(status_text(&restarting), "Restarting (1) 1 second ago");
        let healthy = StatusView {
            health: Some("healthy"),
            ..up
        };
        assert_eq!(status_text(&healthy), "Up 5 seconds (healthy)");
    }

    #[test]
    fn commands_quote_arguments_with_spaces() {
        assert_eq!(
            command_text("sh", &["-c".into(), "echo hi".into()]),
            "sh -c 'echo hi'"
        );
        assert_eq!(command_text("top", &[]), "top");
    }
}
