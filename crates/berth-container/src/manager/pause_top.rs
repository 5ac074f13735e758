//! `pause`/`unpause` and `top`.

use super::{Containers, blocking, cgroup_of};
use crate::cgroup;
use crate::error::{ContainerError, Result, conflict};
use crate::record::Status;

impl Containers {
    /// `POST /containers/{id}/pause` (`true`) and `/unpause` (`false`).
    pub async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.op.lock().await;
        let r = c.record();
        match (r.state.status, pause) {
            (Status::Running, true) | (Status::Paused, false) => {}
            (Status::Paused, true) => {
                return Err(conflict(format!("container {} is already paused", c.id)));
            }
            (Status::Running, false) => {
                return Err(conflict(format!("container {} is not paused", c.id)));
            }
            _ => return Err(conflict(format!("container {} is not running", c.id))),
        }
        if berth_runtime::spec::without_cgroups() {
            // A rootless daemon's containers have no cgroup, so no freezer.
            return Err(ContainerError::Internal(format!(
                "cannot {} container: a rootless daemon has no cgroups (no freezer)",
                if pause { "pause" } else { "unpause" }
            )));
        }
        let cg = cgroup_of(&r, &c.paths);
        blocking(move || cgroup::freeze(&cg, pause))
            .await?
            .map_err(|e| {
                ContainerError::Internal(format!(
                    "cannot {} container: {e}",
                    if pause { "pause" } else { "unpause" }
                ))
            })?;
        c.update(|r| {
            r.state.status = if pause {
                Status::Paused
            } else {
                Status::Running
            }
        })?;
        if pause {
            self.stop_health(&c);
        } else {
            self.resume_health(&c);
        }
        self.event(&c, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `GET /containers/{id}/top`: `(titles, rows)` of the host's `ps` for the container's pids.
    pub async fn top(&self, key: &str, ps_args: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let c = self.get(key)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(conflict(format!("container {} is not running", c.id)));
        }
        let cg = cgroup_of(&r, &c.paths);
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(str::to_string).collect()
        };
        let init_pid = r.state.pid;
        blocking(move || {
            let mut pids = cgroup::pids(&cg);
            if pids.is_empty() && berth_runtime::spec::without_cgroups() {
                // A rootless daemon's containers have no cgroup: the processes of the
                // container's pid namespace instead.
                pids = crate::rootless_pids::in_pid_namespace_of(init_pid);
            }
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| ContainerError::Internal(format!("error running ps: {e}")))?;
            if !out.status.success() {
                return Err(ContainerError::Internal(format!(
                    "ps: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
        })
        .await?
    }
}

/// Filters `ps` output to the given pids (Docker's `top`).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ContainerError::Internal("Couldn't find PID field in ps output".into()))?;
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let mut row: Vec<String> = fields[..titles.len().saturating_sub(1).min(fields.len())]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if fields.len() >= titles.len() {
            row.push(fields[titles.len() - 1..].join(" "));
        }
        rows.push(row);
    }
    Ok((titles, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_is_filtered_to_the_containers_pids() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let (titles, rows) = parse_ps(out, &[42]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(
            rows,
            vec![vec![
                "root",
                "42",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
        assert!(parse_ps("A B\n", &[]).is_err());
    }
}
