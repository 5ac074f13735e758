//! Shims nobody supervises, found when the daemon opens: a shim the last daemon released
//! and was killed before it recorded the start (the shim may still be creating the
//! container when the next daemon looks), or one whose container a removal took away
//! meanwhile. Left alone, such a shim and its container outlive the record (found by the
//! SIGKILL test: a shim of a removed container, still running its loop).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime::{Bundle, ShimHandle};

use crate::cgroup;

/// How long a shim may take to finish creating its container and answer.
const SHIM_ANSWER: Duration = Duration::from_secs(10);

/// Whether `pid` is the shim of the bundle `run_dir` (its command line names the bundle: a
/// recycled pid is never signalled).
fn is_shim_of(pid: i32, run_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .any(|arg| arg == run_dir.as_os_str().as_bytes())
    })
}

/// Ends the shim of `run_dir` if one still runs, and the container it runs; whether there
/// was one. A shim that listens is asked to SIGKILL its container (it then records the exit,
/// cleans up and leaves); one that does not answer within [`SHIM_ANSWER`] (still creating,
/// or stuck) is SIGKILLed, and what it left in the bundle's cgroup with it. A gated shim
/// never released exits by itself once the last daemon's end closed its gate.
pub(super) fn end_unsupervised_shim(run_dir: &Path) -> bool {
    let bundle = Bundle::new(run_dir);
    let Some(pid) = Bundle::read_pid(&bundle.shim_pid_path()).ok().flatten() else {
        return false;
    };
    if !is_shim_of(pid, run_dir) {
        return false;
    }
    tracing::warn!(bundle = %run_dir.display(), pid, "ending a shim nobody supervises");
    let deadline = Instant::now() + SHIM_ANSWER;
    let mut asked = false;
    while is_shim_of(pid, run_dir) {
        if !asked && let Ok(h) = ShimHandle::connect(run_dir) {
            asked = h.kill(9).is_ok();
        }
        if Instant::now() > deadline {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            if let Some(cg) = bundle_cgroup(&bundle) {
                cgroup::kill_all(&cg, SHIM_ANSWER);
                cgroup::remove(&cg);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The cgroup the bundle's spec names.
fn bundle_cgroup(bundle: &Bundle) -> Option<String> {
    let spec = std::fs::read(bundle.config_path()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&spec).ok()?;
    v["linux"]["cgroupsPath"].as_str().map(str::to_string)
}
