//! A container's output: logs, attach (through the shim or from the log), resize.

use std::path::PathBuf;
use std::time::Duration;

use super::{AttachFuture, Containers, PendingAttach, blocking, lock};
use crate::error::{ContainerError, Result, conflict, invalid};
use crate::logs::{self, LogOptions};

impl Containers {
    /// Whether a container's output is raw (TTY) rather than multiplexed; and its log path.
    pub fn log_source(&self, key: &str) -> Result<(bool, PathBuf)> {
        let c = self.get(key)?;
        let r = c.record();
        let Some(format) = logs::LogFormat::for_driver(r.log_driver()) else {
            return Err(invalid(
                "configured logging driver does not support reading",
            ));
        };
        Ok((r.config.tty, format.path(&c.paths.dir, &c.id)))
    }

    /// Streams the log as the client reads it into `tx`, following while the container runs
    /// when asked. Ends when the receiver is dropped.
    pub async fn stream_logs(
        &self,
        key: &str,
        o: LogOptions,
        tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let (tty, path) = self.log_source(key)?;
        let mut rx = c.notify.subscribe();
        let mut reader = logs::LogReader::new(&path);
        let (r, back) = blocking(move || (reader.read(), reader)).await?;
        reader = back;
        let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
        let mut out = Vec::new();
        for e in logs::select(entries, &o) {
            e.encode(&o, !tty, &mut out);
        }
        if !out.is_empty() && tx.send(out).await.is_err() {
            return Ok(());
        }
        if !o.follow {
            return Ok(());
        }
        loop {
            let running = rx.borrow_and_update().running;
            let (r, back) = blocking(move || (reader.read(), reader)).await?;
            reader = back;
            let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
            let mut out = Vec::new();
            for e in entries {
                if o.until.is_some_and(|u| e.time >= u) {
                    let _ = tx.send(out).await;
                    return Ok(());
                }
                if e.selected(&o) {
                    e.encode(&o, !tty, &mut out);
                }
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(());
            }
            if !running {
                return Ok(());
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    /// Output for an attached client, read from the json-file log (the shim does not serve
    /// attach yet): everything logged from now on (and the past log with `logs`) until the
    /// container's current or next run ends. No stdin. Ends when the receiver is dropped.
    pub async fn attach_output(
        &self,
        key: &str,
        o: LogOptions,
        logs_too: bool,
        tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<()> {
        let c = self.get(key)?;
        let (tty, path) = self.log_source(key)?;
        let mut rx = c.notify.subscribe();
        let (was_running, start_exits) = {
            let s = rx.borrow_and_update();
            (s.running, s.exits)
        };
        let mut reader = if logs_too {
            logs::LogReader::new(&path)
        } else {
            logs::LogReader::at_end(&path)
        };
        loop {
            let (done, removed) = {
                let s = rx.borrow_and_update();
                let done = if was_running {
                    !s.running
                } else {
                    s.exits > start_exits
                };
                (done, s.removed)
            };
            let (r, back) = blocking(move || (reader.read(), reader)).await?;
            reader = back;
            let entries = r.map_err(|e| ContainerError::io("read", &path, e))?;
            let mut out = Vec::new();
            for e in entries.iter().filter(|e| e.selected(&o)) {
                e.encode(&o, !tty, &mut out);
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(());
            }
            if done || removed {
                return Ok(());
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    /// Attaches to a container's stdio through its shim. Registration is immediate (before
    /// this returns), so a client can answer its caller and then start the container: one that
    /// is not running gets the client connected when it starts (Docker's `run`: attach, then
    /// start), so no output is missed. The future fails if the container never starts.
    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachFuture> {
        let c = self.get(key)?;
        let running = c.record().state.status.is_running();
        if let (true, Some(h)) = (running, c.shim()) {
            return Ok(Box::pin(async move {
                blocking(move || h.attach(stdin, stdout, stderr))
                    .await?
                    .map_err(Into::into)
            }));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&c.pending).push(PendingAttach {
            stdin,
            stdout,
            stderr,
            tx,
        });
        Ok(Box::pin(async move {
            match rx.await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(conflict(format!("container {} did not start", c.id))),
            }
        }))
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.get(key)?;
        let Some(h) = c.shim() else {
            return Err(conflict(format!("container {} is not running", c.id)));
        };
        if !c.record().config.tty {
            return Ok(());
        }
        blocking(move || h.resize(height, width)).await??;
        Ok(())
    }
}
