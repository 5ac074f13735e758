//! A blocking reader over a blob that survives dropped connections: when the stream fails
//! (or ends early), it asks the registry again from the byte it got to, with an HTTP `Range`
//! (skipping what it has when the registry answers with the whole blob), up to
//! `max-download-attempts` times with a growing pause. Whoever reads it (the layer unpack)
//! never notices; the store still verifies the whole blob's digest at the end.

use std::io::{self, Read};
use std::time::Duration;

use berth_image::Reference;
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Descriptor, RegistryError, Remote};

/// dockerd's `max-download-attempts` default.
pub const MAX_DOWNLOAD_ATTEMPTS: u32 = 5;

pub(crate) struct ResumingReader<'a, R: Remote> {
    remote: &'a R,
    handle: &'a Handle,
    repository: &'a Reference,
    desc: &'a Descriptor,
    inner: Option<Box<dyn Read + Send + 'a>>,
    /// Bytes of the blob delivered so far.
    offset: u64,
    /// Bytes to drop from the current stream (the registry ignored the Range).
    skip: u64,
    failures: u32,
    /// Told before each retry, with the pause it waits (for `Retrying in N seconds`).
    on_retry: Box<dyn FnMut(Duration) + 'a>,
    /// The pause after the n-th failure is n times this.
    backoff: Duration,
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
        on_retry: Box<dyn FnMut(Duration) + 'a>,
    ) -> Self {
        ResumingReader {
            remote,
            handle,
            repository,
            desc,
            inner: None,
            offset: 0,
            skip: 0,
            failures: 0,
            on_retry,
            backoff: Duration::from_secs(1),
        }
    }

    /// Opens the stream at the current offset (the first open's error is returned as is).
    pub(crate) fn open(&mut self) -> Result<(), RegistryError> {
        let blob = self.handle.block_on(self.remote.fetch_blob(
            self.repository,
            self.desc,
            self.offset,
        ))?;
        self.skip = self.offset - blob.start.min(self.offset);
        let reader =
            SyncIoBridge::new_with_handle(StreamReader::new(blob.stream), self.handle.clone());
        self.inner = Some(Box::new(reader));
        Ok(())
    }

    /// Whether a failed read is worth another attempt; pauses before it.
    fn retry(&mut self, e: &io::Error) -> bool {
        // A digest mismatch (InvalidData) or a refusal will not get better.
        if matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::PermissionDenied
        ) || self.failures + 1 >= MAX_DOWNLOAD_ATTEMPTS
        {
            return false;
        }
        self.failures += 1;
        let pause = self.backoff * self.failures;
        tracing::info!(blob = %self.desc.digest, offset = self.offset, error = %e, "blob download failed, resuming");
        (self.on_retry)(pause);
        std::thread::sleep(pause);
        self.inner = None;
        true
    }
}

impl<R: Remote> Read for ResumingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.offset >= self.desc.size {
            return Ok(0);
        }
        loop {
            if self.inner.is_none()
                && let Err(e) = self.open()
            {
                let e = to_io(e);
                if self.retry(&e) {
                    continue;
                }
                return Err(e);
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
                        return Err(e);
                    }
                }
            }
        }
    }
}
