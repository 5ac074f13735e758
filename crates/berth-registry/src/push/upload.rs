//! Blob uploads: existence checks that never take a failed check for "missing", cross-
//! repository mounts, monolithic uploads for small blobs, chunked uploads (PATCH with
//! `Content-Range`) for big ones, and resuming an interrupted chunked upload from the `Range`
//! the registry reports for the session; when the session is gone, the blob starts over.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use berth_image::Digest;
use berth_image::digest::Hasher;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use tokio::runtime::Handle;

use super::session::Session;
use crate::client::{RegistryError, Result};

/// Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of this size (each
/// chunk is what an interrupted upload may have to send again).
pub(crate) const CHUNK_SIZE: usize = 16 << 20;

/// Attempts per request (existence checks, chunks) before the push fails.
const ATTEMPTS: u32 = 5;

/// Attempts of a whole blob when the registry lost the upload session.
const BLOB_ATTEMPTS: u32 = 3;

/// What an existence check or a mount found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The blob is in the repository already (its size).
    Exists(u64),
    Missing,
}

/// A blob upload target: one repository of one registry.
pub(crate) struct Uploader<'a> {
    pub session: &'a Session,
    pub handle: &'a Handle,
    /// `team/app`.
    pub path: &'a str,
    /// The pause after the n-th failed attempt is n times this.
    pub backoff: Duration,
}

fn pause(backoff: Duration, attempt: u32) {
    std::thread::sleep(backoff * attempt);
}

impl Uploader<'_> {
    fn scopes(&self) -> Vec<String> {
        vec![Session::push_scope(self.path)]
    }

    /// HEAD of the blob: whether the repository has it. A failed check (timeout, reset,
    /// 5xx) is retried and, if it keeps failing, fails the push: taking it for "missing" would
    /// upload again what is there (moby#27623).
    pub fn exists(&self, digest: &Digest) -> Result<Found> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.session.base, self.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.handle.block_on(self.session.send(
                Method::HEAD,
                &url,
                &[],
                None,
                &self.scopes(),
            ));
            match answer {
                Ok(a) if a.status.is_success() => {
                    let size = a
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    return Ok(Found::Exists(size));
                }
                Ok(a) if a.status == StatusCode::NOT_FOUND => return Ok(Found::Missing),
                Ok(a)
                    if a.status == StatusCode::UNAUTHORIZED
                        || a.status == StatusCode::FORBIDDEN =>
                {
                    return Err(self.session.refusal(&a));
                }
                Ok(a) if attempt >= ATTEMPTS => {
                    return Err(self
                        .session
                        .unexpected(&format!("checking blob {digest}"), &a));
                }
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                other => {
                    tracing::info!(blob = %digest, attempt, answer = ?other.as_ref().map(|a| a.status).map_err(|e| e.to_string()), "blob check failed, retrying");
                    pause(self.backoff, attempt);
                }
            }
        }
    }

    /// Starts an upload session, asking the registry to mount `digest` from the repository
    /// `from` (same registry) when given. Returns `None` when the blob was mounted, the
    /// session's location otherwise.
    pub fn start(&self, mount: Option<(&Digest, &str)>) -> Result<Option<String>> {
        let mut url = format!("{}/v2/{}/blobs/uploads/", self.session.base, self.path);
        let mut scopes = self.scopes();
        if let Some((digest, from)) = mount {
            url.push_str(&format!("?mount={digest}&from={from}"));
            scopes.push(Session::pull_scope(from));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.handle.block_on(self.session.send(
                Method::POST,
                &url,
                &[("content-length", "0".into())],
                Some(Bytes::new()),
                &scopes,
            ));
            match answer {
                Ok(a) if a.status == StatusCode::CREATED && mount.is_some() => return Ok(None),
                Ok(a) if a.status == StatusCode::ACCEPTED => {
                    let location = a.header("location").ok_or_else(|| {
                        RegistryError::Transport(format!(
                            "registry {} started an upload without a Location",
                            self.session.registry
                        ))
                    })?;
                    return Ok(Some(self.session.url(location)));
                }
                Ok(a) if a.status.is_server_error() && attempt < ATTEMPTS => {
                    pause(self.backoff, attempt)
                }
                Ok(a) => return Err(self.session.unexpected("starting an upload", &a)),
                Err(RegistryError::Transport(m)) if attempt < ATTEMPTS => {
                    tracing::info!(error = %m, attempt, "starting an upload failed, retrying");
                    pause(self.backoff, attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `location` with `digest=` added to its query.
    fn finish_url(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// Uploads a blob whose bytes `source` yields (opened anew for each whole-blob attempt):
    /// small ones in one PUT, big ones chunked, resuming a failed chunk from the registry's
    /// `Range`. `location` is a session started already (after a failed mount). Reading runs
    /// on its own thread ahead of the upload, so that compressing and sending overlap.
    /// `progress` gets the source's bytes consumed. Returns the digest and size sent.
    pub fn upload(
        &self,
        mut location: Option<String>,
        open: &(dyn Fn() -> io::Result<Box<dyn Read + Send>> + Sync),
        expected: Option<&Digest>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Digest, u64)> {
        let mut whole_attempt = 0;
        loop {
            whole_attempt += 1;
            let loc = match location.take() {
                Some(l) => l,
                None => self.start(None)?.ok_or_else(|| {
                    RegistryError::Transport("registry mounted a blob it was not asked to".into())
                })?,
            };
            match self.upload_once(loc, open, progress) {
                Ok((digest, size)) => {
                    if let Some(e) = expected
                        && *e != digest
                    {
                        return Err(RegistryError::Invalid(format!(
                            "blob {e} changed while it was pushed (now {digest})"
                        )));
                    }
                    return Ok((digest, size));
                }
                Err(Attempt::Restart(why)) if whole_attempt < BLOB_ATTEMPTS => {
                    tracing::info!(reason = %why, "upload session lost, starting the blob over");
                    pause(self.backoff, whole_attempt);
                }
                Err(Attempt::Restart(why)) => return Err(RegistryError::Transport(why)),
                Err(Attempt::Fail(e)) => return Err(e),
            }
        }
    }

    fn upload_once(
        &self,
        mut location: String,
        open: &(dyn Fn() -> io::Result<Box<dyn Read + Send>> + Sync),
        progress: &(dyn Fn(u64) + Sync),
    ) -> std::result::Result<(Digest, u64), Attempt> {
        let mut source = open().map_err(|e| {
            Attempt::Fail(RegistryError::Transport(format!("cannot read blob: {e}")))
        })?;
        let (tx, rx): (SyncSender<io::Result<Bytes>>, Receiver<io::Result<Bytes>>) =
            sync_channel(2);
        std::thread::scope(|scope| {
            // The reader (and compressor) runs ahead by up to two chunks.
            scope.spawn(move || {
                loop {
                    let mut buf = vec![0u8; CHUNK_SIZE];
                    let mut filled = 0;
                    let result = loop {
                        if filled == buf.len() {
                            break Ok(());
                        }
                        match source.read(&mut buf[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    if let Err(e) = result {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    buf.truncate(filled);
                    let last = filled < CHUNK_SIZE;
                    if tx.send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                    if last {
                        return;
                    }
                }
            });
            let mut hasher = Hasher::new();
            let mut offset = 0u64;
            let mut first = true;
            loop {
                let chunk = match rx.recv() {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        return Err(Attempt::Fail(RegistryError::Transport(format!(
                            "cannot read blob: {e}"
                        ))));
                    }
                    // The reader ended after a short (or empty) chunk was sent.
                    Err(_) => Bytes::new(),
                };
                hasher.update(&chunk);
                let last = chunk.len() < CHUNK_SIZE;
                if first && last {
                    // Small: one PUT with the whole blob.
                    let digest = hasher.finish();
                    let size = chunk.len() as u64;
                    self.put(&location, &digest, chunk)?;
                    progress(size);
                    return Ok((digest, size));
                }
                first = false;
                if !chunk.is_empty() {
                    location = self.patch_resuming(location, offset, chunk.clone())?;
                    offset += chunk.len() as u64;
                    progress(offset);
                }
                if last {
                    let digest = hasher.finish();
                    self.put(&location, &digest, Bytes::new())?;
                    return Ok((digest, offset));
                }
            }
        })
    }

    /// The closing PUT (with the last bytes for a monolithic upload).
    fn put(
        &self,
        location: &str,
        digest: &Digest,
        body: Bytes,
    ) -> std::result::Result<(), Attempt> {
        let url = Self::finish_url(location, digest);
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", body.len().to_string()),
        ];
        let answer = self.handle.block_on(self.session.send(
            Method::PUT,
            &url,
            &headers,
            Some(body),
            &self.scopes(),
        ));
        match answer {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) if a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN => {
                Err(Attempt::Fail(self.session.refusal(&a)))
            }
            Ok(a) if a.status == StatusCode::BAD_REQUEST => {
                // A digest the registry computed otherwise: the bytes arrived wrong.
                Err(Attempt::Restart(
                    self.session
                        .unexpected(&format!("completing the upload of {digest}"), &a)
                        .to_string(),
                ))
            }
            Ok(a) => Err(Attempt::Restart(
                self.session
                    .unexpected(&format!("completing the upload of {digest}"), &a)
                    .to_string(),
            )),
            Err(e) => Err(Attempt::Restart(e.to_string())),
        }
    }

    /// Sends `chunk` at `offset`; when that fails, asks the registry how far the session got
    /// and sends the rest of the chunk from there. Returns the session's next location.
    fn patch_resuming(
        &self,
        mut location: String,
        mut offset: u64,
        chunk: Bytes,
    ) -> std::result::Result<String, Attempt> {
        let end = offset + chunk.len() as u64;
        let start = offset;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let part = chunk.slice((offset - start) as usize..);
            let headers = [
                ("content-type", "application/octet-stream".to_string()),
                ("content-length", part.len().to_string()),
                ("content-range", format!("{offset}-{}", end - 1)),
            ];
            let answer = self.handle.block_on(self.session.send(
                Method::PATCH,
                &location,
                &headers,
                Some(part),
                &self.scopes(),
            ));
            let failure = match answer {
                Ok(a) if a.status == StatusCode::ACCEPTED || a.status == StatusCode::NO_CONTENT => {
                    return Ok(a
                        .header("location")
                        .map(|l| self.session.url(l))
                        .unwrap_or(location));
                }
                Ok(a)
                    if a.status == StatusCode::UNAUTHORIZED
                        || a.status == StatusCode::FORBIDDEN =>
                {
                    return Err(Attempt::Fail(self.session.refusal(&a)));
                }
                Ok(a) => self.session.unexpected("uploading a chunk", &a).to_string(),
                Err(e) => e.to_string(),
            };
            if attempt >= ATTEMPTS {
                return Err(Attempt::Restart(failure));
            }
            tracing::info!(error = %failure, offset, attempt, "chunk upload failed, asking the registry where to resume");
            pause(self.backoff, attempt);
            match self.status(&location) {
                Some((next_location, next)) if next >= start && next <= end => {
                    location = next_location;
                    offset = next;
                    if offset == end {
                        return Ok(location);
                    }
                }
                // The registry lost the session, or it holds bytes this chunk cannot explain.
                _ => return Err(Attempt::Restart(failure)),
            }
        }
    }

    /// `GET` of the upload session: its current location and the offset of the next byte
    /// (`Range: 0-<last>`), or `None` when the session is unknown.
    fn status(&self, location: &str) -> Option<(String, u64)> {
        let answer = self
            .handle
            .block_on(
                self.session
                    .send(Method::GET, location, &[], None, &self.scopes()),
            )
            .ok()?;
        if answer.status != StatusCode::NO_CONTENT && !answer.status.is_success() {
            return None;
        }
        let next = match answer.header("range") {
            Some(r) => {
                let last = r.rsplit('-').next()?.trim().parse::<u64>().ok()?;
                // `0-0` is what distribution reports for an empty session.
                if r.trim() == "0-0" { 0 } else { last + 1 }
            }
            None => 0,
        };
        let next_location = answer
            .header("location")
            .map(|l| self.session.url(l))
            .unwrap_or_else(|| location.to_string());
        Some((next_location, next))
    }
}

/// How one whole-blob attempt ended.
enum Attempt {
    /// The session is unusable; starting the blob over may work.
    Restart(String),
    /// Retrying will not help (refused, unreadable source).
    Fail(RegistryError),
}

impl From<RegistryError> for Attempt {
    fn from(e: RegistryError) -> Attempt {
        Attempt::Fail(e)
    }
}
