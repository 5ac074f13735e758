//! A blocking reader over a blob that survives dropped connections, stalls and restarts: when
//! the stream fails (or ends early, or stalls, see `stall`), it asks the registry again from
//! the byte it got to, with an HTTP `Range` (skipping what it has when the registry answers
//! with the whole blob), up to `max-download-attempts` times with a growing pause. With a
//! partial download on disk (see `partial`), it first replays the bytes saved there (by an
//! earlier pull, perhaps of a daemon since killed) and asks the registry only for the rest
//! (the store's `write_layer_resumable` appends what it reads to that file). Whoever reads it (the layer unpack)
//! never notices; the store still verifies the whole blob's digest at the end.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use berth_image::Reference;
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::partial::Partial;
use super::stall::{self, StallPolicy};
use super::{Descriptor, RegistryError, Remote};

/// dockerd's `max-download-attempts` default.
pub const MAX_DOWNLOAD_ATTEMPTS: u32 = 5;

/// How a blob download copes with a bad network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// Attempts per blob before the pull fails (`max-download-attempts`).
    pub max_attempts: u32,
    /// The pause after the n-th failure is n times this.
    pub backoff: Duration,
    pub stall: StallPolicy,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence {
            max_attempts: MAX_DOWNLOAD_ATTEMPTS,
            backoff: Duration::from_secs(1),
            stall: StallPolicy::default(),
        }
    }
}

pub(crate) struct ResumingReader<'a, R: Remote> {
    remote: &'a R,
    handle: &'a Handle,
    repository: &'a Reference,
    desc: &'a Descriptor,
    persistence: Persistence,
    inner: Option<Box<dyn Read + Send + 'a>>,
    /// Bytes of the blob delivered so far.
    offset: u64,
    /// Bytes of the blob the partial download held when this reader started.
    resumed_from: u64,
    /// Bytes to drop from the current stream (the registry ignored the Range).
    skip: u64,
    failures: u32,
    /// Told before each retry, with the pause it waits (for `Retrying in N seconds`).
    on_retry: Box<dyn FnMut(Duration) + 'a>,
    partial: Option<Partial>,
    /// The saved bytes being replayed.
    prefix: Option<io::Take<File>>,
    /// The reader gave up on the network (not on the bytes): the partial download is worth
    /// keeping for a later resume.
    pub(crate) network_failed: bool,
}

fn to_io(e: RegistryError) -> io::Error {
    match e {
        // Not worth retrying: the registry said no.
        RegistryError::NotFound(m) | RegistryError::Unauthorized(m) | RegistryError::Invalid(m) => {
            io::Error::new(io::ErrorKind::PermissionDenied, m)
        }
        other => io::Error::other(other.to_string()),
    }
}

impl<'a, R: Remote> ResumingReader<'a, R> {
    pub(crate) fn new(
        remote: &'a R,
        handle: &'a Handle,
        repository: &'a Reference,
        desc: &'a Descriptor,
        persistence: Persistence,
        partial: Option<Partial>,
        on_retry: Box<dyn FnMut(Duration) + 'a>,
    ) -> Self {
        let resumed_from = partial.as_ref().map_or(0, Partial::len);
        let prefix = match partial
            .as_ref()
            .filter(|p| p.len() > 0)
            .map(Partial::prefix)
        {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                tracing::warn!(blob = %desc.digest, error = %e, "cannot read a partial download");
                None
            }
            None => None,
        };
        let (partial, resumed_from) = if resumed_from > 0 && prefix.is_none() {
            // Unreadable: start over (and stop saving into it).
            (None, 0)
        } else {
            (partial, resumed_from)
        };
        ResumingReader {
            remote,
            handle,
            repository,
            desc,
            persistence,
            inner: None,
            offset: 0,
            resumed_from,
            skip: 0,
            failures: 0,
            on_retry,
            partial,
            prefix,
            network_failed: false,
        }
    }

    /// Bytes an earlier download had saved (0 when starting from scratch).
    pub(crate) fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// Where the blob's bytes are to be saved and how many are there: the partial download,
    /// when there is one.
    pub(crate) fn spool(&self) -> Option<(std::path::PathBuf, u64)> {
        self.partial
            .as_ref()
            .map(|p| (p.path().to_path_buf(), self.resumed_from))
    }

    /// Forgets the partial download (the blob is stored, or its bytes are wrong).
    pub(crate) fn discard_partial(&mut self) {
        if let Some(p) = self.partial.take() {
            p.remove();
        }
    }

    /// The byte the next request to the registry starts at.
    fn network_offset(&self) -> u64 {
        self.offset.max(self.resumed_from)
    }

    /// Opens the stream at the current offset (the first open's error is returned as is). A
    /// registry that does not start answering within the stall window has stalled.
    pub(crate) fn open(&mut self) -> Result<(), RegistryError> {
        let from = self.network_offset();
        if from >= self.desc.size {
            // All of it was saved already.
            self.inner = Some(Box::new(io::empty()));
            return Ok(());
        }
        let policy = self.persistence.stall;
        let blob = self
            .handle
            .block_on(async {
                tokio::time::timeout(
                    policy.window,
                    self.remote.fetch_blob(self.repository, self.desc, from),
                )
                .await
            })
            .map_err(|_| RegistryError::Transport(policy.error().to_string()))??;
        self.skip = from - blob.start.min(from);
        let stream = stall::watch(blob.stream, policy);
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), self.handle.clone());
        self.inner = Some(Box::new(reader));
        Ok(())
    }

    /// Whether a failed read is worth another attempt; pauses before it.
    fn retry(&mut self, e: &io::Error) -> bool {
        // A digest mismatch (InvalidData), a refusal or a full disk will not get better.
        if matches!(
            e.kind(),
            io::ErrorKind::InvalidData
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::StorageFull
        ) {
            return false;
        }
        if self.failures + 1 >= self.persistence.max_attempts.max(1) {
            self.network_failed = true;
            return false;
        }
        self.failures += 1;
        let pause = self.persistence.backoff * self.failures;
        tracing::info!(blob = %self.desc.digest, offset = self.offset, error = %e, "blob download failed, resuming");
        (self.on_retry)(pause);
        std::thread::sleep(pause);
        self.inner = None;
        true
    }

    /// The error the reader gives up with: says how often it tried.
    fn give_up(&self, e: io::Error) -> io::Error {
        if self.failures == 0 {
            return e;
        }
        io::Error::new(
            e.kind(),
            format!("{e} (gave up after {} attempts)", self.failures + 1),
        )
    }
}

impl<R: Remote> Read for ResumingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.offset >= self.desc.size {
            return Ok(0);
        }
        if let Some(prefix) = self.prefix.as_mut() {
            let n = prefix.read(buf)?;
            if n > 0 {
                self.offset += n as u64;
                return Ok(n);
            }
            self.prefix = None;
            if self.offset < self.resumed_from {
                // The file shrank under us: fetch from where the replay stopped, saving nothing.
                self.resumed_from = self.offset;
                self.partial = None;
            }
        }
        loop {
            if self.inner.is_none()
                && let Err(e) = self.open()
            {
                let e = to_io(e);
                if self.retry(&e) {
                    continue;
                }
                return Err(self.give_up(e));
            }
            let inner = self.inner.as_mut().expect("opened above");
            // Never past the blob's size: a registry sending more cannot fill the disk.
            let want = buf
                .len()
                .min((self.desc.size - self.offset + self.skip) as usize);
            let result = match inner.read(&mut buf[..want]) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        self.desc.digest, self.offset, self.desc.size
                    ),
                )),
                other => other,
            };
            match result {
                Ok(n) if (n as u64) <= self.skip => self.skip -= n as u64,
                Ok(n) => {
                    let skipped = self.skip as usize;
                    self.skip = 0;
                    buf.copy_within(skipped..n, 0);
                    let n = n - skipped;
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) => {
                    if !self.retry(&e) {
                        return Err(self.give_up(e));
                    }
                }
            }
        }
    }
}
