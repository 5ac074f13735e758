//! Health checks, with Docker's semantics: a probe from `HEALTHCHECK` or `--health-*` runs as
//! an exec through the container's shim, one at a time, first after one interval (the start
//! interval during the start period while the status is `starting`). Status goes `starting` →
//! `healthy` on a success and → `unhealthy` after `retries` consecutive failures (failures in
//! the start period do not count). The last five results are kept in the record
//! (`State.Health`), and each status change is a `health_status: <status>` event. The monitor
//! stops when the container stops or is paused (status then `unhealthy`, as Docker's) and
//! starts again when it starts, is unpaused or is adopted.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::models::HealthConfig;
use berth_api::models::container::{Health, HealthcheckResult};
use berth_runtime::ShimHandle;
use berth_runtime::shim::ExecConfig;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::manager::{Container, Containers};
use crate::names;
use crate::record::{Status, go_time};

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of probe output kept per result.
pub const MAX_OUTPUT_LEN: usize = 4096;

/// A container's resolved health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The command run in the container.
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn nanos_or(v: i64, default: Duration) -> Duration {
    if v > 0 {
        Duration::from_nanos(v as u64)
    } else {
        default
    }
}

impl Probe {
    /// The probe of a health configuration: `None` without a test, for `["NONE"]` and for an
    /// unknown test type. `CMD-SHELL` runs through `shell` (the container's `Shell`, or
    /// `/bin/sh -c`).
    pub fn from_config(cfg: Option<&HealthConfig>, shell: Option<&[String]>) -> Option<Probe> {
        let cfg = cfg?;
        let test = cfg.test.as_deref()?;
        let (kind, rest) = test.split_first()?;
        let cmd = match kind.as_str() {
            "CMD" => rest.to_vec(),
            "CMD-SHELL" => {
                let shell = shell
                    .filter(|s| !s.is_empty())
                    .map(<[String]>::to_vec)
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                shell.into_iter().chain(rest.iter().cloned()).collect()
            }
            _ => return None,
        };
        if cmd.is_empty() {
            return None;
        }
        Some(Probe {
            cmd,
            interval: nanos_or(cfg.interval, DEFAULT_INTERVAL),
            timeout: nanos_or(cfg.timeout, DEFAULT_TIMEOUT),
            start_period: nanos_or(cfg.start_period, Duration::ZERO),
            start_interval: nanos_or(cfg.start_interval, DEFAULT_START_INTERVAL),
            retries: if cfg.retries > 0 {
                cfg.retries
            } else {
                DEFAULT_RETRIES
            },
        })
    }

    /// The wait before the next check: the start interval while in the start period and
    /// still `starting`, the interval otherwise.
    pub fn next_interval(&self, since_start: Duration, status: &str) -> Duration {
        if since_start < self.start_period && status == STARTING {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// Docker's transition on one probe result: keeps the last [`MAX_LOG_ENTRIES`] results,
/// resets the streak on success, counts a failure unless it came in the start period while
/// still `starting`, and turns `unhealthy` at `retries` failures in a row.
pub fn record_result(
    h: &mut Health,
    result: HealthcheckResult,
    retries: i64,
    in_start_period: bool,
) {
    let ok = result.exit_code == 0;
    h.log.push(result);
    if h.log.len() > MAX_LOG_ENTRIES {
        let extra = h.log.len() - MAX_LOG_ENTRIES;
        h.log.drain(..extra);
    }
    if ok {
        h.failing_streak = 0;
        h.status = HEALTHY.into();
        return;
    }
    if h.status == STARTING && in_start_period {
        return;
    }
    h.failing_streak += 1;
    if h.failing_streak >= retries {
        h.status = UNHEALTHY.into();
    }
}

/// Go's `time.Duration.String()` (`30s`, `200ms`, `1m30s`, `1.5s`), as Docker prints timeouts.
pub fn go_duration(d: Duration) -> String {
    fn frac(v: u128, div: u128) -> String {
        let (int, rem) = (v / div, v % div);
        if rem == 0 {
            return int.to_string();
        }
        let width = div.to_string().len() - 1;
        let digits = format!("{rem:0width$}");
        format!("{int}.{}", digits.trim_end_matches('0'))
    }
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = match ns {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", frac(ns, div));
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s = ns % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s, 1_000_000_000));
    out.push('s');
    out
}

/// Collects the payloads of Docker's multiplexed frames (stdout and stderr together, in
/// arrival order), keeping the first [`MAX_OUTPUT_LEN`] bytes.
#[derive(Debug, Default)]
struct Demux {
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl Demux {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            if self.pending.len() < 8 {
                return;
            }
            let len = u32::from_be_bytes([
                self.pending[4],
                self.pending[5],
                self.pending[6],
                self.pending[7],
            ]) as usize;
            if self.pending.len() < 8 + len {
                return;
            }
            let room = MAX_OUTPUT_LEN.saturating_sub(self.out.len());
            let take = len.min(room);
            self.out.extend_from_slice(&self.pending[8..8 + take]);
            self.pending.drain(..8 + len);
        }
    }
}

/// A running monitor; dropping it stops the monitor.
pub struct Monitor {
    _stop: oneshot::Sender<()>,
}

fn result(start: DateTime<Utc>, exit_code: i64, output: String) -> HealthcheckResult {
    HealthcheckResult {
        start: go_time(Some(start)),
        end: go_time(Some(Utc::now())),
        exit_code,
        output,
    }
}

/// Runs one probe through the shim; a probe that cannot start or outlives its timeout is a
/// failure with exit code -1.
async fn run_probe(
    shim: ShimHandle,
    probe: &Probe,
    exec_id: String,
) -> (DateTime<Utc>, HealthcheckResult) {
    let start = Utc::now();
    let cfg = ExecConfig {
        exec_id: exec_id.clone(),
        args: probe.cmd.clone(),
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let output = Arc::new(Mutex::new(Demux::default()));
    let out2 = output.clone();
    let shim2 = shim.clone();
    let mut task = tokio::task::spawn_blocking(move || -> Result<i64, String> {
        let p = shim2
            .exec_start(&cfg)
            .map_err(|e| e.oci_exec_message().unwrap_or_else(|| e.to_string()))?;
        if let Some(mut stream) = p.stream {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out2
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .feed(&buf[..n]),
                }
            }
        }
        let st = shim2.exec_wait(&cfg.exec_id).map_err(|e| e.to_string())?;
        Ok(st.exit_code.map_or(-1, i64::from))
    });
    let text = |o: &Arc<Mutex<Demux>>| {
        String::from_utf8_lossy(&o.lock().unwrap_or_else(|e| e.into_inner()).out).into_owned()
    };
    match tokio::time::timeout(probe.timeout, &mut task).await {
        Ok(Ok(Ok(code))) => (start, result(start, code, text(&output))),
        Ok(Ok(Err(msg))) => (start, result(start, -1, msg)),
        Ok(Err(e)) => (start, result(start, -1, format!("internal error: {e}"))),
        Err(_) => {
            let id = exec_id.clone();
            let _ = tokio::task::spawn_blocking(move || shim.exec_kill(&id, 9)).await;
            // Wait for the killed probe so that dying probes do not pile up.
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            let out = text(&output);
            let limit = go_duration(probe.timeout);
            let msg = if out.is_empty() {
                format!("Health check exceeded timeout ({limit})")
            } else {
                format!("Health check exceeded timeout ({limit}): {out}")
            };
            (start, result(start, -1, msg))
        }
    }
}

async fn monitor(me: Containers, c: Arc<Container>, probe: Probe, mut stop: oneshot::Receiver<()>) {
    let started = c.record().state.started_at.unwrap_or_else(Utc::now);
    let since_start = |t: DateTime<Utc>| (t - started).to_std().unwrap_or_default();
    loop {
        let status = c
            .record()
            .state
            .health
            .map(|h| h.status)
            .unwrap_or_default();
        let wait = probe.next_interval(since_start(Utc::now()), &status);
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        let r = c.record();
        if r.state.status == Status::Paused {
            continue;
        }
        let Some(shim) = c.shim_handle() else { return };
        // Probes are execs, and Docker reports them as such in the event stream.
        let exec_id = names::new_id();
        let cmd = probe.cmd.join(" ");
        let id_attr = [("execID", exec_id.clone())];
        me.event(&c, &format!("exec_create: {cmd}"), &id_attr);
        me.event(&c, &format!("exec_start: {cmd}"), &id_attr);
        let (start, res) = tokio::select! {
            _ = &mut stop => return,
            r = run_probe(shim, &probe, exec_id.clone()) => r,
        };
        me.event(
            &c,
            &format!("exec_die: {cmd}"),
            &[("execID", exec_id), ("exitCode", res.exit_code.to_string())],
        );
        if res.exit_code != 0 {
            tracing::debug!(id = %c.id(), output = %res.output, "health check failed");
        }
        let in_start_period = since_start(start) < probe.start_period;
        let mut changed = None;
        let mut stopped = false;
        let saved = c.modify(|r| {
            // A result that lost the race with the container's exit is dropped.
            if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                stopped = true;
                return;
            }
            let h = r.state.health.get_or_insert_with(|| Health {
                status: STARTING.into(),
                ..Default::default()
            });
            let old = h.status.clone();
            record_result(h, res, probe.retries, in_start_period);
            if h.status != old {
                changed = Some(h.status.clone());
            }
        });
        if let Err(e) = saved {
            tracing::warn!(id = %c.id(), error = %e, "cannot record a health check result");
        }
        if stopped {
            return;
        }
        if let Some(s) = changed {
            me.event(&c, &format!("health_status: {s}"), &[]);
        }
    }
}

impl Containers {
    /// Starts (or restarts) a container's health monitor when it has a health check: the
    /// status becomes `starting` with the streak reset and the log kept. Called when the
    /// container starts and when its shim is adopted.
    pub(crate) fn start_health(&self, c: &Arc<Container>) {
        self.spawn_health(c, true);
    }

    /// Starts the monitor again after an unpause, keeping the status (`unhealthy` since the
    /// pause, as Docker's) until the next result.
    pub(crate) fn resume_health(&self, c: &Arc<Container>) {
        self.spawn_health(c, false);
    }

    fn spawn_health(&self, c: &Arc<Container>, reset: bool) {
        let r = c.record();
        let Some(probe) =
            Probe::from_config(r.config.healthcheck.as_ref(), r.config.shell.as_deref())
        else {
            c.set_health_monitor(None);
            return;
        };
        let (tx, rx) = oneshot::channel();
        c.set_health_monitor(Some(Monitor { _stop: tx }));
        if reset
            && let Err(e) = c.modify(|r| {
                let h = r.state.health.get_or_insert_with(Health::default);
                h.status = STARTING.into();
                h.failing_streak = 0;
            })
        {
            tracing::warn!(id = %c.id(), error = %e, "cannot record health status");
        }
        self.spawn_until_shutdown(monitor(self.clone(), c.clone(), probe, rx));
    }

    /// Stops a container's health monitor; a container that had one is `unhealthy` from then
    /// on (Docker's behaviour for a stopped container).
    pub(crate) fn stop_health(&self, c: &Container) {
        if c.set_health_monitor(None) {
            let _ = c.modify(|r| {
                if let Some(h) = r.state.health.as_mut() {
                    h.status = UNHEALTHY.into();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn probes_follow_dockers_test_forms_and_defaults() {
        let p = Probe::from_config(Some(&cfg(&["CMD-SHELL", "exit 0"])), None).unwrap();
        assert_eq!(p.cmd, ["/bin/sh", "-c", "exit 0"]);
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.start_period, Duration::ZERO);
        assert_eq!(p.start_interval, Duration::from_secs(5));
        assert_eq!(p.retries, 3);
        let shell = vec!["/bin/ash".to_string(), "-ec".to_string()];
        let p = Probe::from_config(Some(&cfg(&["CMD-SHELL", "true"])), Some(&shell)).unwrap();
        assert_eq!(p.cmd, ["/bin/ash", "-ec", "true"]);
        let p = Probe::from_config(Some(&cfg(&["CMD", "cat", "/x"])), None).unwrap();
        assert_eq!(p.cmd, ["cat", "/x"]);
        assert!(Probe::from_config(Some(&cfg(&["NONE"])), None).is_none());
        assert!(Probe::from_config(Some(&cfg(&[])), None).is_none());
        assert!(Probe::from_config(None, None).is_none());
        let mut c = cfg(&["CMD", "true"]);
        c.interval = 200_000_000;
        c.start_period = 10_000_000_000;
        c.start_interval = 50_000_000;
        c.retries = 1;
        let p = Probe::from_config(Some(&c), None).unwrap();
        assert_eq!(p.interval, Duration::from_millis(200));
        assert_eq!(
            p.next_interval(Duration::from_secs(1), STARTING),
            Duration::from_millis(50)
        );
        assert_eq!(
            p.next_interval(Duration::from_secs(1), HEALTHY),
            Duration::from_millis(200)
        );
        assert_eq!(
            p.next_interval(Duration::from_secs(11), STARTING),
            Duration::from_millis(200)
        );
    }

    fn res(code: i64) -> HealthcheckResult {
        HealthcheckResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn status_transitions_are_dockers() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        record_result(&mut h, res(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        record_result(&mut h, res(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        record_result(&mut h, res(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        record_result(&mut h, res(1), 2, true);
        assert_eq!(
            (h.status.as_str(), h.failing_streak),
            (HEALTHY, 1),
            "the start period only protects a starting container"
        );
        record_result(&mut h, res(-1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 2));
        for _ in 0..4 {
            record_result(&mut h, res(1), 2, false);
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(h.log[0].exit_code, -1, "the oldest results go first");
    }

    #[test]
    fn durations_print_as_go_does() {
        let d = |ms: u64| go_duration(Duration::from_millis(ms));
        assert_eq!(d(0), "0s");
        assert_eq!(d(200), "200ms");
        assert_eq!(d(1000), "1s");
        assert_eq!(d(1500), "1.5s");
        assert_eq!(d(30_000), "30s");
        assert_eq!(d(90_000), "1m30s");
        assert_eq!(d(3_600_000), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn demux_keeps_both_streams_up_to_the_limit() {
        let frame = |stream: u8, data: &[u8]| {
            let mut f = vec![stream, 0, 0, 0];
            f.extend_from_slice(&(data.len() as u32).to_be_bytes());
            f.extend_from_slice(data);
            f
        };
        let mut d = Demux::default();
        let mut bytes = frame(1, b"out\n");
        bytes.extend(frame(2, b"err\n"));
        d.feed(&bytes[..5]);
        d.feed(&bytes[5..]);
        assert_eq!(d.out, b"out\nerr\n");
        d.feed(&frame(1, &vec![b'x'; 5000]));
        assert_eq!(d.out.len(), MAX_OUTPUT_LEN);
    }
}
