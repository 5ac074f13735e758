//! The logs of this node's swarm tasks: their containers' logs, read from disk as
//! `docker logs` reads them.

use std::path::PathBuf;
use std::time::Duration;

use berth_container::logs::{LogReader, select};
use berth_container::{Containers, LogOptions};
use berth_swarm::BoxFuture;
use berth_swarm::logs::{LogLine, LogRequest, TaskLogSource};
use berth_swarm::types::Task;

pub struct LocalTaskLogs {
    pub ctrs: Containers,
    /// This node's ID (empty: any task whose container is here).
    pub node_id: String,
}

impl LocalTaskLogs {
    fn container(task: &Task) -> Option<&str> {
        task.status
            .container_status
            .as_ref()
            .map(|c| c.container_id.as_str())
            .filter(|c| !c.is_empty())
    }
}

impl TaskLogSource for LocalTaskLogs {
    fn serves(&self, task: &Task) -> bool {
        // Without a node ID: the task containers here, whoever's (a worker serving managers).
        (self.node_id.is_empty() || task.node_id == self.node_id)
            && Self::container(task).is_some_and(|c| self.ctrs.get(c).is_ok())
    }

    fn logs<'a>(
        &'a self,
        task: &'a Task,
        request: &'a LogRequest,
        tx: tokio::sync::mpsc::Sender<LogLine>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(id) = Self::container(task) else {
                return Ok(());
            };
            let (_, path) = self.ctrs.log_source(id).map_err(|e| e.to_string())?;
            let o = LogOptions {
                stdout: request.stdout,
                stderr: request.stderr,
                since: request.since,
                tail: request.tail,
                ..Default::default()
            };
            let mut reader = LogReader::new(PathBuf::from(&path));
            let mut first = true;
            loop {
                let (read, back) = tokio::task::spawn_blocking(move || (reader.read(), reader))
                    .await
                    .map_err(|e| e.to_string())?;
                reader = back;
                let entries = read.map_err(|e| format!("reading {}: {e}", path.display()))?;
                let entries = if first {
                    select(entries, &o)
                } else {
                    entries.into_iter().filter(|e| e.selected(&o)).collect()
                };
                first = false;
                for e in entries {
                    let line = LogLine {
                        stderr: e.stream == "stderr",
                        time: e.time,
                        data: e.log.into_bytes(),
                    };
                    if tx.send(line).await.is_err() {
                        return Ok(());
                    }
                }
                if !request.follow {
                    return Ok(());
                }
                tokio::select! {
                    _ = tx.closed() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        })
    }
}
