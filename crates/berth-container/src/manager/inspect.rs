//! Reads: list, inspect, prune, and how containers use images and disk.

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::models::container::{SummaryHostConfig, SummaryNetworkSettings};
use berth_api::models::{
    ContainerInspect, ContainerState, ContainerSummary, DriverData, MountPoint, NetworkSettings,
};
use berth_image::{ContainerUse, Digest};
use chrono::{DateTime, Utc};

use super::{Containers, blocking, lock};
use crate::error::Result;
use crate::filters::ListFilter;
use crate::logs::{self};
use crate::record::{Record, Status, go_time};
use crate::status::{StatusView, command_text, status_text};

impl Containers {
    /// `GET /containers/json`.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        mut filter: ListFilter,
    ) -> Result<Vec<ContainerSummary>> {
        let resolve_created =
            |key: &str| -> Result<DateTime<Utc>> { Ok(self.get(key)?.record().created) };
        if let Some(b) = filter.filters.get("before").first() {
            filter.before = Some(resolve_created(b)?);
        }
        if let Some(s) = filter.filters.get("since").first() {
            filter.since = Some(resolve_created(s)?);
        }
        if filter.filters.contains("ancestor") {
            let ids = filter
                .filters
                .get("ancestor")
                .iter()
                .filter_map(|a| self.inner.images.get(a).ok().map(|i| i.id.to_string()))
                .collect();
            filter.ancestors = Some(ids);
        }
        let all = all
            || limit.is_some()
            || filter.wants_stopped()
            || filter.before.is_some()
            || filter.since.is_some();
        // Filtered in place, copied only when listed: pollers (the swarm agent) list often.
        let mut recs: Vec<Record> = self
            .all()
            .iter()
            .filter_map(|c| {
                let r = lock(&c.rec);
                let shown =
                    (all || r.state.status.is_running() || r.state.status == Status::Restarting)
                        && filter.matches(&r);
                shown.then(|| r.clone())
            })
            .collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let now = Utc::now();
        let mut out = Vec::new();
        for r in recs {
            let mut row = summary(&r, now);
            if let Some(n) = &self.inner.opts.network {
                row.ports = n.0.ports(&r.id);
                row.network_settings.networks = n.0.networks(&r.id);
            }
            out.push(row);
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// The containers that carry label `key`, as (its value, container id). For callers that
    /// look often (the swarm agent, on every pass), where [`Self::list`] would build a summary
    /// of every container each time.
    pub fn with_label(&self, key: &str) -> Vec<(String, String)> {
        self.all()
            .iter()
            .filter_map(|c| {
                let r = lock(&c.rec);
                let value = r.config.labels.as_ref()?.get(key)?.clone();
                Some((value, c.id.clone()))
            })
            .collect()
    }

    /// A container's state alone: inspect's `State`, without the rest of inspect.
    pub fn state(&self, key: &str) -> Result<ContainerState> {
        let c = self.get(key)?;
        let r = lock(&c.rec);
        Ok(state_of(&r))
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, key: &str) -> Result<ContainerInspect> {
        let c = self.get(key)?;
        let r = c.record();
        let lowers = self
            .inner
            .images
            .get(&r.image_id)
            .and_then(|i| self.inner.images.layer_dirs(&i.id))
            .map(|l| {
                l.iter()
                    .rev()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let p = &c.paths;
        let data: BTreeMap<String, String> = [
            ("LowerDir", lowers),
            ("UpperDir", p.upper().display().to_string()),
            ("WorkDir", p.work().display().to_string()),
            ("MergedDir", p.rootfs().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mounts = crate::volumes::mount_points(&r);
        Ok(ContainerInspect {
            id: r.id.clone(),
            created: go_time(Some(r.created)),
            path: r.path.clone(),
            args: r.args.clone(),
            state: state_of(&r),
            image: r.image_id.clone(),
            resolv_conf_path: p.resolv_conf().display().to_string(),
            hostname_path: p.hostname().display().to_string(),
            hosts_path: p.hosts().display().to_string(),
            log_path: match logs::LogFormat::for_driver(r.log_driver()) {
                None => String::new(),
                Some(f) => f.path(&p.dir, &r.id).display().to_string(),
            },
            name: r.slash_name(),
            restart_count: r.restart_count,
            driver: "overlayfs".into(),
            platform: "linux".into(),
            exec_ids: Some(self.exec_ids(&r.id)).filter(|v| !v.is_empty()),
            host_config: r.host_config.clone(),
            graph_driver: DriverData {
                name: "overlayfs".into(),
                data,
            },
            mounts,
            config: r.config.clone(),
            network_settings: match &self.inner.opts.network {
                Some(n) => n.0.settings(&r.id),
                None => NetworkSettings::default(),
            },
            ..Default::default()
        })
    }

    /// `POST /containers/prune`: removes stopped containers passing `keep`; returns the ids
    /// removed and the bytes reclaimed.
    pub async fn prune(
        &self,
        keep: &(dyn Fn(&Record) -> bool + Sync),
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.all() {
            let r = c.record();
            if r.state.status.is_running() || r.state.status == Status::Restarting || !keep(&r) {
                continue;
            }
            let upper = c.paths.upper();
            let size = blocking(move || dir_size(&upper)).await.unwrap_or(0);
            if self.remove_container(&c, false, false).await.is_ok() {
                removed.push(r.id.clone());
                space += size;
            }
        }
        Ok((removed, space))
    }

    /// How containers use an image: a running one first.
    pub fn image_use(&self, image: &Digest) -> Option<ContainerUse> {
        let id = image.to_string();
        let mut stopped = None;
        for c in self.all() {
            let r = c.record();
            if r.image_id == id {
                if r.state.status.is_running() {
                    return Some(ContainerUse::Running(r.id));
                }
                stopped.get_or_insert(r.id);
            }
        }
        stopped.map(ContainerUse::Stopped)
    }

    /// How many containers use an image.
    pub fn count_using(&self, image: &Digest) -> i64 {
        let id = image.to_string();
        self.all()
            .iter()
            .filter(|c| lock(&c.rec).image_id == id)
            .count() as i64
    }

    /// `(total, running, paused, stopped)`.
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        let (mut total, mut running, mut paused, mut stopped) = (0, 0, 0, 0);
        for c in self.all() {
            total += 1;
            match lock(&c.rec).state.status {
                Status::Running | Status::Restarting => running += 1,
                Status::Paused => paused += 1,
                _ => stopped += 1,
            }
        }
        (total, running, paused, stopped)
    }

    /// Bytes of the container's image plus its writable layer (`SizeRootFs`).
    pub fn size_root_fs(&self, id: &str) -> u64 {
        let Ok(c) = self.get(id) else { return 0 };
        let image = self
            .inner
            .images
            .get(&c.record().image_id)
            .map_or(0, |i| i.size);
        image + dir_size(&c.paths.upper())
    }

    /// Bytes in a container's writable layer.
    pub fn size_rw(&self, id: &str) -> u64 {
        self.get(id)
            .map(|c| dir_size(&c.paths.upper()))
            .unwrap_or(0)
    }
}

pub(super) fn summary(r: &Record, now: DateTime<Utc>) -> ContainerSummary {
    let s = &r.state;
    let since = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).to_std().unwrap_or_default());
    let status = status_text(&StatusView {
        running: s.status.is_running() || s.status == Status::Restarting,
        paused: s.status == Status::Paused,
        restarting: s.status == Status::Restarting,
        removing: s.status == Status::Removing,
        dead: s.status == Status::Dead,
        exit_code: s.exit_code,
        since_start: since(s.started_at),
        since_finish: since(s.finished_at),
        health: s.health.as_ref().map(|h| h.status.as_str()),
    });
    let mounts: Vec<MountPoint> = crate::volumes::mount_points(r);
    let image = if r.image.is_empty() {
        r.image_id.clone()
    } else {
        r.image.clone()
    };
    ContainerSummary {
        id: r.id.clone(),
        names: vec![r.slash_name()],
        image,
        image_id: r.image_id.clone(),
        command: command_text(&r.path, &r.args),
        created: r.created.timestamp(),
        ports: Vec::new(),
        labels: r.config.labels.clone().unwrap_or_default(),
        state: s.status.as_str().into(),
        status,
        host_config: SummaryHostConfig {
            network_mode: r.host_config.network_mode.to_string(),
            annotations: None,
        },
        network_settings: SummaryNetworkSettings::default(),
        mounts,
        ..Default::default()
    }
}

pub(super) fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.len();
            }
        }
    }
    total
}

/// Inspect's `State` of a record.
fn state_of(r: &Record) -> ContainerState {
    let s = &r.state;
    ContainerState {
        status: s.status.as_str().into(),
        running: s.status.is_running() || s.status == Status::Restarting,
        paused: s.status == Status::Paused,
        restarting: s.status == Status::Restarting,
        oom_killed: s.oom_killed,
        dead: s.status == Status::Dead,
        pid: s.pid,
        exit_code: s.exit_code,
        error: s.error.clone(),
        started_at: go_time(s.started_at),
        finished_at: go_time(s.finished_at),
        health: s.health.clone(),
    }
}
