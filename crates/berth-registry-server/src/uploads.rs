//! Blob upload sessions. A session is a file under `_uploads/<id>/data` plus, in memory, the
//! running hash of its bytes so finishing does not read them again. The file is the truth:
//! after a restart, or when a session is used again after its hasher was lost, its size comes
//! from the file and the digest is computed from it on finish. Bytes that reached the server
//! before a connection dropped stay in the session, so a client resumes from the `Range` the
//! status reports instead of starting over.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use futures_util::StreamExt;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::driver::FileWriter;
use crate::error::{RegistryError, Result};
use crate::paths;
use crate::store::Store;

/// Bytes gathered from the request body before one blocking write.
const WRITE_BATCH: usize = 1 << 20;

pub struct Session {
    pub name: String,
    pub id: String,
    pub size: u64,
    /// The hash of exactly `size` bytes, when known.
    hasher: Option<Hasher>,
}

/// A session and the repository it belongs to (outside its lock, so a request for another
/// repository is refused without waiting for it).
type Entry = (String, Arc<tokio::sync::Mutex<Session>>);

#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, Entry>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Uploads {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session in `name`, hashing with `algorithm`.
    pub async fn start(
        &self,
        store: &Arc<Store>,
        name: &str,
        algorithm: Algorithm,
    ) -> Result<String> {
        let id = format!("{:032x}", rand::random::<u128>());
        let path = paths::upload_data(name, &id);
        let s = store.clone();
        blocking(move || s.driver.writer(&path, false).and_then(|w| w.commit())).await?;
        let session = Session {
            name: name.to_string(),
            id: id.clone(),
            size: 0,
            hasher: Some(algorithm.hasher()),
        };
        self.map().insert(
            id.clone(),
            (name.to_string(), Arc::new(tokio::sync::Mutex::new(session))),
        );
        Ok(id)
    }

    /// The session `id` of `name`, from memory or (after a restart) from storage.
    pub async fn get(
        &self,
        store: &Arc<Store>,
        name: &str,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        let unknown = || RegistryError::BlobUploadUnknown {
            name: name.to_string(),
            id: id.to_string(),
        };
        // Ids are ours: 32 hex digits. Anything else is unknown (and never a path).
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        if let Some((owner, s)) = self.map().get(id) {
            return if owner == name {
                Ok(s.clone())
            } else {
                Err(unknown())
            };
        }
        let path = paths::upload_data(name, id);
        let s = store.clone();
        let info = blocking(move || s.driver.stat(&path))
            .await
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        let session = Arc::new(tokio::sync::Mutex::new(Session {
            name: name.to_string(),
            id: id.to_string(),
            size: info.size,
            hasher: None,
        }));
        let mut map = self.map();
        let (owner, s) = map
            .entry(id.to_string())
            .or_insert((name.to_string(), session));
        if owner == name {
            Ok(s.clone())
        } else {
            Err(unknown())
        }
    }

    /// Appends a request body to the session; `start` is where the client says it begins
    /// (`Content-Range`), which must be where the session ends. Returns the new size. When
    /// the body breaks off, what arrived is kept and the error returned.
    pub async fn append(
        &self,
        store: &Arc<Store>,
        session: &mut Session,
        start: Option<u64>,
        body: Body,
    ) -> Result<u64> {
        if let Some(start) = start
            && start != session.size
        {
            return Err(RegistryError::RangeInvalid {
                range: format!("{start}-"),
                size: session.size,
            });
        }
        let path = paths::upload_data(&session.name, &session.id);
        let s = store.clone();
        let mut writer: Option<Box<dyn FileWriter>> =
            Some(blocking(move || s.driver.writer(&path, true)).await?);
        let mut hasher = session.hasher.take();
        let mut stream = body.into_data_stream();
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let mut broken = None;
        loop {
            let next = stream.next().await;
            let done = match next {
                Some(Ok(chunk)) => {
                    batch.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => {
                    broken = Some(e.to_string());
                    true
                }
                None => true,
            };
            if batch.len() >= WRITE_BATCH || (done && !batch.is_empty()) {
                let data = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
                let mut w = writer.take().expect("writer present between batches");
                let mut h = hasher.take();
                let (w, h, r) = blocking(move || {
                    let r = w.write_all(&data);
                    if r.is_ok()
                        && let Some(h) = h.as_mut()
                    {
                        h.update(&data);
                    }
                    (w, h, r)
                })
                .await;
                session.size = w.size();
                writer = Some(w);
                hasher = h;
                if let Err(e) = r {
                    // A short write leaves the file and any hash out of step.
                    session.hasher = None;
                    return Err(RegistryError::Storage(crate::driver::DriverError::io(
                        &paths::upload_data(&session.name, &session.id),
                        e,
                    )));
                }
            }
            if done {
                break;
            }
        }
        let w = writer.take().expect("writer present at the end");
        blocking(move || w.commit()).await?;
        session.hasher = hasher;
        if let Some(e) = broken {
            return Err(RegistryError::BlobUploadInvalid(format!(
                "request body broke off after {} bytes of the upload: {e}",
                session.size
            )));
        }
        Ok(session.size)
    }

    /// Verifies the session's bytes against `digest` and makes them the blob in `name`.
    /// A mismatch ends the session.
    pub async fn finish(
        &self,
        store: &Arc<Store>,
        session: &mut Session,
        digest: &Digest,
    ) -> Result<()> {
        let name = session.name.clone();
        let id = session.id.clone();
        let data = paths::upload_data(&name, &id);
        let actual = match session.hasher.take() {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => {
                let (s, p, alg) = (store.clone(), data.clone(), digest.algorithm());
                blocking(move || hash_file(&s, &p, alg)).await?
            }
        };
        let (s, want) = (store.clone(), digest.clone());
        let result = blocking(move || -> Result<()> {
            if actual != want {
                let _ = s.driver.delete(&paths::upload_dir(&name, &id));
                return Err(RegistryError::DigestInvalid(format!(
                    "upload has digest {actual}, not {want}"
                )));
            }
            let _commit = s.commit_guard();
            if s.blob_size_anywhere(&want).is_some() {
                let _ = s.driver.delete(&data);
            } else {
                s.driver.move_path(&data, &paths::blob_data(&want))?;
            }
            s.link_blob(&name, &want)?;
            let _ = s.driver.delete(&paths::upload_dir(&name, &id));
            Ok(())
        })
        .await;
        self.map().remove(&session.id);
        result
    }

    pub async fn cancel(&self, store: &Arc<Store>, session: &Session) -> Result<()> {
        self.map().remove(&session.id);
        let (s, dir) = (store.clone(), paths::upload_dir(&session.name, &session.id));
        blocking(move || s.driver.delete(&dir)).await?;
        Ok(())
    }

    /// Removes sessions untouched for `max_age` (their data file's mtime is the last write).
    pub fn expire(&self, store: &Store, max_age: Duration) -> Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for name in store.catalog()? {
            let Ok(ids) = store.driver.list(&paths::uploads(&name)) else {
                continue;
            };
            for dir in ids {
                let id = paths::base(&dir).to_string();
                let idle = store
                    .driver
                    .stat(&paths::upload_data(&name, &id))
                    .map(|i| now.duration_since(i.modified).unwrap_or_default())
                    .unwrap_or(max_age);
                if idle < max_age {
                    continue;
                }
                // A session busy with a request right now is not abandoned.
                let busy = self
                    .map()
                    .get(&id)
                    .is_some_and(|(_, s)| s.try_lock().is_err());
                if busy {
                    continue;
                }
                self.map().remove(&id);
                if store.driver.delete(&dir).is_ok() {
                    removed += 1;
                    tracing::info!(repository = %name, upload = %id, "expired an abandoned upload");
                }
            }
        }
        Ok(removed)
    }
}

fn hash_file(store: &Store, path: &str, alg: Algorithm) -> Result<Digest> {
    let mut r = store.driver.reader(path, 0)?;
    let mut h = alg.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| crate::driver::DriverError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
