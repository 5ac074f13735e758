//! Reading one task's log for `service logs`/`task logs`, and, when following, going on
//! across lost connections: a node that restarts or drops off the network ends the stream
//! from it, but `docker service logs -f` stays open until the client closes it. The task's
//! log is asked for again, with a backoff, from the line after the last one sent (`since`
//! that line's time, lines not newer dropped), of a source rebuilt each time (the node's
//! address may have changed), until the client goes or the task leaves the store.

use std::sync::Arc;
use std::time::Duration;

use berth_container::Containers;
use berth_swarm::logs::{LogLine, LogRequest, TaskLogSource};
use berth_swarm::manager::Handle;
use berth_swarm::types::Task;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// Where the logs of a swarm's tasks are read: this node's engine, and the other nodes as
/// the store knows them now.
#[derive(Clone)]
pub struct Sources {
    pub h: Handle,
    pub ctrs: Containers,
}

impl Sources {
    pub fn now(&self) -> Arc<dyn TaskLogSource> {
        let mut sources: Vec<Arc<dyn TaskLogSource>> =
            vec![Arc::new(crate::swarm_logs::LocalTaskLogs {
                ctrs: self.ctrs.clone(),
                node_id: self.h.node_id().to_string(),
            })];
        // Tasks on other nodes: asked of the node running them.
        if let Some(remote) = self.h.remote_logs() {
            sources.push(Arc::new(remote));
        }
        Arc::new(berth_swarm::logs::Sources(sources))
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The last line passed on: its time and the lines seen at exactly that time (a resumed read
/// from `since` that time sends them again).
#[derive(Default)]
struct Seen {
    time: Option<DateTime<Utc>>,
    at_time: Vec<Vec<u8>>,
}

impl Seen {
    /// Whether `line` is new; records it if so.
    fn admit(&mut self, line: &LogLine) -> bool {
        match self.time {
            Some(t) if line.time < t => false,
            Some(t) if line.time == t => {
                if self.at_time.contains(&line.data) {
                    return false;
                }
                self.at_time.push(line.data.clone());
                true
            }
            _ => {
                self.time = Some(line.time);
                self.at_time = vec![line.data.clone()];
                true
            }
        }
    }
}

/// Streams one task's lines, tagged with `ctx`, into `line_tx`; following, across lost
/// connections to its node.
pub fn spawn_task(
    sources: Sources,
    source: Arc<dyn TaskLogSource>,
    mut task: Task,
    request: LogRequest,
    ctx: Arc<str>,
    line_tx: mpsc::Sender<(Arc<str>, LogLine)>,
) {
    tokio::spawn(async move {
        let mut source = source;
        let mut seen = Seen::default();
        let mut retry = FIRST_RETRY;
        loop {
            let mut req = request.clone();
            if let Some(t) = seen.time {
                req.since = Some(t);
                req.tail = None;
            }
            let (tx, mut rx) = mpsc::channel::<LogLine>(64);
            let mut got_any = false;
            let (seen, got_any_ref, line_tx, ctx) = (&mut seen, &mut got_any, &line_tx, &ctx);
            // Owns the receiver: when the client goes, it returns and drops it, which ends
            // the read too (also one stalled on a silent connection).
            let forward = async move {
                loop {
                    let line = tokio::select! {
                        l = rx.recv() => l,
                        _ = line_tx.closed() => None,
                    };
                    let Some(line) = line else { return };
                    if !seen.admit(&line) {
                        continue;
                    }
                    *got_any_ref = true;
                    if line_tx.send((ctx.clone(), line)).await.is_err() {
                        return;
                    }
                }
            };
            let both = async { tokio::join!(source.logs(&task, &req, tx), forward).0 };
            let remote = task.node_id != sources.h.node_id();
            let read = tokio::select! {
                r = both => r,
                // A node marked down may have restarted while out of reach: the stream's
                // connection would then never answer again, nor fail.
                _ = node_down(&sources.h, &task.node_id), if request.follow && remote => {
                    Err(format!("node {} is down", task.node_id))
                }
            };
            if let Err(e) = &read {
                tracing::debug!(task = %task.meta.id, error = %e, "task log stream ended");
            }
            if !request.follow || line_tx.is_closed() {
                return;
            }
            if got_any {
                retry = FIRST_RETRY;
            }
            // Lost (the node restarted or is unreachable): ask again later.
            tokio::select! {
                _ = line_tx.closed() => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(MAX_RETRY);
            let Some(now) = sources
                .h
                .store()
                .view(|s| s.tasks.get(&task.meta.id).map(|t| Task::clone(t)))
            else {
                return;
            };
            task = now;
            source = sources.now();
            // Not served now (node unknown, container gone): the read answers nothing, and
            // the next turn looks again.
        }
    });
}

/// Resolves once the store marks `node_id` down (it missed its heartbeats).
async fn node_down(h: &Handle, node_id: &str) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let down = h.store().view(|s| {
            s.nodes
                .get(node_id)
                .is_some_and(|n| n.status.state == "down")
        });
        if down {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: i64, data: &str) -> LogLine {
        LogLine {
            stderr: false,
            time: DateTime::from_timestamp(secs, 0).unwrap(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_resumed_read_drops_what_was_sent() {
        let mut seen = Seen::default();
        assert!(seen.admit(&line(1, "a")));
        assert!(seen.admit(&line(2, "b")));
        assert!(seen.admit(&line(2, "c")));
        // Resumed `since` 2: both lines at 2 come again, then a new one at 2 and later ones.
        assert!(!seen.admit(&line(2, "b")));
        assert!(!seen.admit(&line(2, "c")));
        assert!(seen.admit(&line(2, "d")));
        assert!(!seen.admit(&line(1, "a")));
        assert!(seen.admit(&line(3, "e")));
        assert!(!seen.admit(&line(3, "e")));
    }
}
