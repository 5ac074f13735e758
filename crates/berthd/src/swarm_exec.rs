//! The swarm agent's engine: tasks run as containers of this daemon's container manager,
//! found again by their `com.docker.swarm.task.id` label (after a restart too). A task's
//! secrets and configs live on a tmpfs of their own (never on disk), bind-mounted read-only
//! file by file at their targets, as dockerd does.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use berth_api::models::container::ContainerCreateRequest;
use berth_container::Containers;
use berth_swarm::BoxFuture;
use berth_swarm::agent::{LABEL_TASK_ID, Observed, TaskExecutor, TaskFile, TaskRun};
use berth_swarm::types::Task;
use serde_json::json;

pub struct Executor {
    pub ctrs: Containers,
    /// `<exec-root>/swarm/tasks`: one tmpfs per task with files.
    pub files_root: PathBuf,
    /// Pulls the images tasks need.
    pub puller: crate::swarm_pull::Puller,
    /// Task id → container id, read once per agent pass (`begin_pass`) and kept up to date
    /// by this executor's own creates and removes: a pass over n tasks lists the containers
    /// once, not n times.
    pub known: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// For `docker_gwbridge`, which tasks on overlays join (`crate::overlay`).
    pub networks: berth_network::Networks,
    /// The daemon's events, whose `health_status` events of task containers wake the agent.
    pub events: Option<std::sync::Arc<crate::events::EventBus>>,
    /// The overlay interfaces in place: a task on an overlay runs once they are.
    pub overlay_ready: Option<std::sync::Arc<crate::overlay::ready::Ready>>,
}

impl Executor {
    pub fn new(
        ctrs: Containers,
        files_root: PathBuf,
        puller: crate::swarm_pull::Puller,
        networks: berth_network::Networks,
    ) -> Self {
        Executor {
            ctrs,
            files_root,
            puller,
            known: Default::default(),
            networks,
            events: None,
            overlay_ready: None,
        }
    }

    /// Wakes the agent on task containers' health changes ([`TaskExecutor::health_changed`]).
    pub fn with_events(mut self, events: std::sync::Arc<crate::events::EventBus>) -> Self {
        self.events = Some(events);
        self
    }

    /// Holds tasks on overlays back from `running` until their interfaces are in place.
    pub fn with_overlay_ready(
        mut self,
        ready: std::sync::Arc<crate::overlay::ready::Ready>,
    ) -> Self {
        self.overlay_ready = Some(ready);
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) {
        let listed = self.task_containers().into_iter().collect();
        *self.known() = listed;
    }

    fn task_containers(&self) -> Vec<(String, String)> {
        self.ctrs.with_label(LABEL_TASK_ID)
    }

    fn container_of(&self, task_id: &str) -> Option<String> {
        self.known().get(task_id).cloned()
    }

    /// Writes the task's files onto a fresh tmpfs and answers the bind mounts that show them.
    fn write_files(
        &self,
        task_id: &str,
        files: &[TaskFile],
    ) -> Result<Vec<serde_json::Value>, String> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.files_root.join(task_id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0700,size=16m"),
        )
        .map_err(|e| format!("mounting a tmpfs for the task's secrets: {e}"))?;
        let mut mounts = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let path = dir.join(format!("{i}"));
            let write = || -> std::io::Result<()> {
                std::fs::write(&path, &f.data)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
                std::os::unix::fs::chown(&path, Some(f.uid), Some(f.gid))
            };
            write().map_err(|e| format!("writing {}: {e}", f.target))?;
            mounts.push(
                json!({"Type": "bind", "Source": path, "Target": f.target, "ReadOnly": true}),
            );
        }
        Ok(mounts)
    }

    fn remove_files(&self, task_id: &str) {
        let dir = self.files_root.join(task_id);
        if dir.exists() {
            let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    async fn create_and_start(&self, run: TaskRun) -> Result<(String, i64), String> {
        let mut config = run.config.clone();
        if config["HostConfig"]["NetworkMode"] == crate::overlay::GWBRIDGE {
            crate::overlay::ensure_gwbridge(&self.networks).await?;
        }
        let mounts = self.write_files(&run.task_id, &run.files)?;
        if !mounts.is_empty() {
            let host = &mut config["HostConfig"];
            let mut all = host["Mounts"].as_array().cloned().unwrap_or_default();
            all.extend(mounts);
            host["Mounts"] = json!(all);
        }
        let mut req: ContainerCreateRequest = serde_json::from_value(config.clone())
            .map_err(|e| format!("invalid container spec: {e}"))?;
        let created = match self.ctrs.create(Some(run.name.clone()), req.clone()).await {
            Ok((id, _)) => Ok(id),
            // The docker CLI pins `image:tag@digest`; an image loaded or built here has no
            // registry digest, so the tag alone names it.
            Err(e) if e.to_string().contains("No such image") && req.config.image.contains('@') => {
                req.config.image = req
                    .config
                    .image
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                self.ctrs
                    .create(Some(run.name.clone()), req)
                    .await
                    .map(|(id, _)| id)
            }
            Err(e) => Err(e),
        };
        let id = created.map_err(|e| e.to_string())?;
        self.known().insert(run.task_id.clone(), id.clone());
        self.ctrs.start(&id).await.map_err(|e| e.to_string())?;
        let pid = self.ctrs.state(&id).map(|s| s.pid).unwrap_or(0);
        Ok((id, pid))
    }
}

impl TaskExecutor for Executor {
    fn task_logs(&self) -> Option<std::sync::Arc<dyn berth_swarm::logs::TaskLogSource>> {
        Some(std::sync::Arc::new(crate::swarm_logs::LocalTaskLogs {
            ctrs: self.ctrs.clone(),
            node_id: String::new(),
        }))
    }
    fn start(&self, run: TaskRun) -> BoxFuture<'_, Result<(String, i64), String>> {
        Box::pin(async move {
            let task_id = run.task_id.clone();
            let result = self.create_and_start(run).await;
            if result.is_err() {
                if let Some(c) = self.container_of(&task_id) {
                    let _ = self.ctrs.remove(&c, true).await;
                    self.known().remove(&task_id);
                }
                self.remove_files(&task_id);
            }
            result
        })
    }

    fn observe<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Observed> {
        Box::pin(async move {
            let Some(id) = self.container_of(task_id) else {
                return Observed::Missing;
            };
            match self.ctrs.state(&id) {
                Ok(s) if s.running => Observed::Running {
                    container_id: id,
                    pid: s.pid,
                },
                Ok(s) if s.status == "created" => Observed::Missing,
                Ok(s) => Observed::Exited {
                    container_id: id,
                    exit_code: s.exit_code,
                    error: s.error,
                },
                Err(_) => Observed::Missing,
            }
        })
    }

    fn stop<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(id) = self.container_of(task_id)
                && let Err(e) = self.ctrs.stop(&id, None, None).await
            {
                tracing::warn!(task = task_id, error = %e, "stopping a task's container");
            }
        })
    }

    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(id) = self.container_of(task_id) {
                match self.ctrs.remove(&id, true).await {
                    Ok(_) => {
                        self.known().remove(task_id);
                    }
                    Err(e) => {
                        tracing::warn!(task = task_id, error = %e, "removing a task's container")
                    }
                }
            }
            self.remove_files(task_id);
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move { self.known().keys().cloned().collect() })
    }

    fn begin_pass(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.refresh() })
    }

    fn prepare<'a>(&'a self, run: &'a TaskRun) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let image = run.config["Image"].as_str().unwrap_or_default();
            self.puller.ensure(image, run.registry_auth.as_deref())
        })
    }

    fn ports<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(async move {
            let id = self.container_of(task_id)?;
            let inspect = self.ctrs.inspect(&id).ok()?;
            let mut ports = Vec::new();
            for (key, bindings) in &inspect.network_settings.ports {
                let (target, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
                let Ok(target) = target.parse::<u64>() else {
                    continue;
                };
                let mut published: Vec<u64> = bindings
                    .iter()
                    .flatten()
                    .filter_map(|b| b.host_port.parse().ok())
                    .collect();
                // One entry per host port (the IPv4 and IPv6 bindings share it).
                published.dedup();
                for p in published {
                    ports.push(json!({"Protocol": protocol, "TargetPort": target, "PublishedPort": p, "PublishMode": "host"}));
                }
            }
            (!ports.is_empty()).then(|| json!({"Ports": ports}))
        })
    }

    fn health_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let events = async {
                let Some(events) = &self.events else {
                    return std::future::pending().await;
                };
                let (_, mut rx) = events.subscribe();
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            if ev.kind == "container"
                                && (ev.action.starts_with("health_status") || ev.action == "die")
                                && ev.actor.attributes.contains_key(LABEL_TASK_ID)
                            {
                                return;
                            }
                        }
                        // Missed some: one pass more does no harm.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return std::future::pending().await;
                        }
                    }
                }
            };
            // A task waiting for its overlay interfaces can be reported running now.
            let attached = async {
                match &self.overlay_ready {
                    Some(r) => r.added().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = events => {}
                _ = attached => {}
            }
        })
    }

    fn networks_ready<'a>(&'a self, task: &'a Task, container_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let networks: Vec<String> = berth_swarm::allocator::task_addresses(task)
                .into_iter()
                .map(|(network, _)| network)
                .collect();
            match &self.overlay_ready {
                Some(r) => r.has(container_id, &networks),
                None => true,
            }
        })
    }

    fn health<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let id = self.container_of(task_id)?;
            self.ctrs.state(&id).ok()?.health.map(|h| h.status)
        })
    }
}
