//! Where the logs of a task come from. The API's `service logs`/`task logs` handler asks a
//! [`TaskLogSource`] per task: this node's engine for its own tasks; a source that reaches
//! other nodes (through the dispatcher) can serve the rest without changing the handler.

use chrono::{DateTime, Utc};

use crate::BoxFuture;
use crate::types::Task;

/// Which lines to send.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub stdout: bool,
    pub stderr: bool,
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only the last N lines of each task (`None`: all).
    pub tail: Option<usize>,
    /// After the past lines, new ones as they are written, until the receiver goes.
    pub follow: bool,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub stderr: bool,
    pub time: DateTime<Utc>,
    /// With its newline, as written.
    pub data: Vec<u8>,
}

pub trait TaskLogSource: Send + Sync {
    /// Whether this source can read `task`'s logs (its container is on a node it reaches).
    fn serves(&self, task: &Task) -> bool;
    /// Sends the task's lines to `tx`; returns at the end of the log (or, following, when
    /// the receiver is dropped).
    fn logs<'a>(
        &'a self,
        task: &'a Task,
        request: &'a LogRequest,
        tx: tokio::sync::mpsc::Sender<LogLine>,
    ) -> BoxFuture<'a, Result<(), String>>;
}
