//! The registry's model on a [`StorageDriver`]: blobs linked into repositories, manifests
//! (stored as blobs, with their media type as the revision record), tags, referrers and the
//! catalog. Synchronous, called from blocking tasks. Layout in [`crate::paths`].
//!
//! Commit order makes a crash harmless: a blob's bytes are in place before its link, a
//! manifest's bytes and revision before its tag, and each record is one atomic `put_content`.
//! Commits that make a blob or manifest reachable hold [`Store::commit_guard`]; garbage
//! collection's sweep takes it exclusively (see `gc.rs`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::digest::{Algorithm, Digest};
use crate::driver::StorageDriver;
use crate::error::{RegistryError, Result};
use crate::manifest::{self, Parsed};
use crate::paths;

pub struct Store {
    pub driver: Arc<dyn StorageDriver>,
    /// Held shared by every commit that makes content reachable, exclusively by a GC sweep.
    commits: RwLock<()>,
    /// While a GC runs: every digest made reachable since it started (kept by its sweep).
    touched: Mutex<Option<HashSet<Digest>>>,
}

/// A stored manifest.
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Store {
    pub fn new(driver: Arc<dyn StorageDriver>) -> Store {
        Store {
            driver,
            commits: RwLock::new(()),
            touched: Mutex::new(None),
        }
    }

    pub fn commit_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.commits.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn sweep_guard(&self) -> RwLockWriteGuard<'_, ()> {
        self.commits.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (`Some`) or ends (`None`) recording what commits touch, for a GC.
    pub(crate) fn track_touched(&self, on: bool) -> Option<HashSet<Digest>> {
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *t, on.then(HashSet::new))
    }

    pub(crate) fn touched(&self) -> HashSet<Digest> {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    fn touch(&self, d: &Digest) {
        if let Some(set) = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            set.insert(d.clone());
        }
    }

    // ---- blobs ----

    /// The size of a blob the repository has, or `BLOB_UNKNOWN`.
    pub fn blob_size(&self, name: &str, d: &Digest) -> Result<u64> {
        let unknown = || RegistryError::BlobUnknown {
            name: name.to_string(),
            digest: d.to_string(),
        };
        self.driver
            .stat(&paths::layer_link(name, d))
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        let info = self
            .driver
            .stat(&paths::blob_data(d))
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        Ok(info.size)
    }

    /// The blob's size when the registry has its bytes (in any repository).
    pub fn blob_size_anywhere(&self, d: &Digest) -> Option<u64> {
        self.driver.stat(&paths::blob_data(d)).ok().map(|i| i.size)
    }

    /// Makes a blob the registry has part of `name` (an upload's end, a mount).
    pub fn link_blob(&self, name: &str, d: &Digest) -> Result<()> {
        self.touch(d);
        self.driver
            .put_content(&paths::layer_link(name, d), d.to_string().as_bytes())?;
        Ok(())
    }

    /// Removes the blob from the repository (its bytes go with a GC when nothing else has it).
    pub fn unlink_blob(&self, name: &str, d: &Digest) -> Result<()> {
        self.driver
            .delete(&paths::layer_dir_of(name, d))
            .map_err(|e| {
                RegistryError::or_not_found(e, || RegistryError::BlobUnknown {
                    name: name.to_string(),
                    digest: d.to_string(),
                })
            })
    }

    /// Stores bytes the caller has verified under their digest, unless already there.
    pub fn put_blob_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        self.touch(d);
        if self.blob_size_anywhere(d) != Some(bytes.len() as u64) {
            self.driver.put_content(&paths::blob_data(d), bytes)?;
        }
        Ok(())
    }

    // ---- manifests ----

    pub fn repo_exists(&self, name: &str) -> bool {
        self.driver.stat(&paths::repo(name)).is_ok()
    }

    /// The digest a tag or digest reference names in the repository.
    pub fn resolve(&self, name: &str, reference: &str) -> Result<Digest> {
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_string(),
            reference: reference.to_string(),
        };
        if reference.contains(':') {
            let d = Digest::parse(reference)
                .map_err(|_| RegistryError::DigestInvalid(format!("{reference:?}")))?;
            self.driver
                .stat(&paths::revision_link(name, &d))
                .map_err(|e| RegistryError::or_not_found(e, unknown))?;
            return Ok(d);
        }
        let link = self
            .driver
            .get_content(&paths::tag_link(name, reference))
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        Digest::parse(String::from_utf8_lossy(&link).trim()).map_err(|_| unknown())
    }

    pub fn get_manifest(&self, name: &str, reference: &str) -> Result<Manifest> {
        let digest = self.resolve(name, reference)?;
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_string(),
            reference: reference.to_string(),
        };
        let media_type = self
            .driver
            .get_content(&paths::revision_link(name, &digest))
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        let bytes = self
            .driver
            .get_content(&paths::blob_data(&digest))
            .map_err(|e| RegistryError::or_not_found(e, unknown))?;
        Ok(Manifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            bytes,
        })
    }

    /// Validates and stores a manifest under `reference` (a tag, or its own digest).
    /// Returns its digest and parsed references.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<(Digest, Parsed)> {
        let parsed = manifest::parse(bytes, content_type)?;
        let digest = if reference.contains(':') {
            let wanted = Digest::parse(reference)
                .map_err(|_| RegistryError::DigestInvalid(format!("{reference:?}")))?;
            let actual = Digest::of(wanted.algorithm(), bytes);
            if actual != wanted {
                return Err(RegistryError::DigestInvalid(format!(
                    "manifest pushed as {wanted} has digest {actual}"
                )));
            }
            actual
        } else {
            Digest::of(Algorithm::Sha256, bytes)
        };
        let _commit = self.commit_guard();
        for b in &parsed.blobs {
            if self.blob_size(name, b).is_err() {
                return Err(RegistryError::ManifestBlobUnknown {
                    name: name.to_string(),
                    digest: b.to_string(),
                });
            }
        }
        for m in &parsed.manifests {
            if self.driver.stat(&paths::revision_link(name, m)).is_err() {
                return Err(RegistryError::ManifestBlobUnknown {
                    name: name.to_string(),
                    digest: m.to_string(),
                });
            }
        }
        for d in parsed.blobs.iter().chain(&parsed.manifests) {
            self.touch(d);
        }
        self.put_blob_bytes(&digest, bytes)?;
        self.driver.put_content(
            &paths::revision_link(name, &digest),
            parsed.media_type.as_bytes(),
        )?;
        if let Some(subject) = &parsed.subject {
            let desc = manifest::referrer_descriptor(&parsed, &digest, bytes.len());
            self.driver.put_content(
                &paths::referrer_link(name, subject, &digest),
                desc.to_string().as_bytes(),
            )?;
        }
        if !reference.contains(':') {
            self.driver.put_content(
                &paths::tag_link(name, reference),
                digest.to_string().as_bytes(),
            )?;
        }
        Ok((digest, parsed))
    }

    /// Stores a manifest fetched by a pull-through cache: its blobs come later, on demand, so
    /// they are not required. The caller verified the digest.
    pub fn cache_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Digest> {
        let parsed = manifest::parse(bytes, content_type)?;
        let digest = match Digest::parse(reference) {
            Ok(d) => d,
            Err(_) => Digest::of(Algorithm::Sha256, bytes),
        };
        let _commit = self.commit_guard();
        self.put_blob_bytes(&digest, bytes)?;
        self.driver.put_content(
            &paths::revision_link(name, &digest),
            parsed.media_type.as_bytes(),
        )?;
        if !reference.contains(':') {
            self.driver.put_content(
                &paths::tag_link(name, reference),
                digest.to_string().as_bytes(),
            )?;
        }
        Ok(digest)
    }

    /// Points `tag` at a manifest the repository has (atomically replacing the old target).
    pub fn set_tag(&self, name: &str, tag: &str, digest: &Digest) -> Result<()> {
        self.driver
            .put_content(&paths::tag_link(name, tag), digest.to_string().as_bytes())?;
        Ok(())
    }

    /// Deletes a tag, or a manifest by digest together with the tags naming it and its
    /// referrer entry.
    pub fn delete_manifest(&self, name: &str, reference: &str) -> Result<()> {
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_string(),
            reference: reference.to_string(),
        };
        if !reference.contains(':') {
            return self
                .driver
                .delete(&paths::tag_dir(name, reference))
                .map_err(|e| RegistryError::or_not_found(e, unknown));
        }
        let digest = self.resolve(name, reference)?;
        // Its referrer entry first, while the bytes still say what its subject is.
        if let Ok(m) = self.get_manifest(name, reference)
            && let Ok(parsed) = manifest::parse(&m.bytes, Some(&m.media_type))
            && let Some(subject) = parsed.subject
        {
            let _ = self
                .driver
                .delete(&paths::referrer_link(name, &subject, &digest));
        }
        for tag in self.tags(name).unwrap_or_default() {
            if self.resolve(name, &tag).ok().as_ref() == Some(&digest) {
                let _ = self.driver.delete(&paths::tag_dir(name, &tag));
            }
        }
        self.driver
            .delete(&paths::revision_dir_of(name, &digest))
            .map_err(|e| RegistryError::or_not_found(e, unknown))
    }

    /// The repository's tags, sorted.
    pub fn tags(&self, name: &str) -> Result<Vec<String>> {
        match self.driver.list(&paths::tags(name)) {
            Ok(list) => Ok(list.iter().map(|p| paths::base(p).to_string()).collect()),
            Err(e) if e.is_not_found() => {
                if self.repo_exists(name) {
                    Ok(Vec::new())
                } else {
                    Err(RegistryError::NameUnknown(name.to_string()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every manifest digest the repository has.
    pub fn revisions(&self, name: &str) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for f in self.driver.walk(&paths::revisions(name))? {
            let parts: Vec<&str> = f.path.rsplit('/').take(3).collect();
            if let [_, hex, alg] = parts[..]
                && let Some(d) = paths::digest_from(alg, hex)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Descriptors of the manifests whose subject is `subject`, optionally of one artifact type.
    pub fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for f in self.driver.walk(&paths::referrers_of(name, subject))? {
            let Ok(raw) = self.driver.get_content(&f.path) else {
                continue;
            };
            let Ok(desc) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            if let Some(want) = artifact_type
                && desc.get("artifactType").and_then(|v| v.as_str()) != Some(want)
            {
                continue;
            }
            out.push(desc);
        }
        Ok(out)
    }

    /// Every repository name, sorted: directories holding `_layers`, `_manifests` or `_uploads`.
    pub fn catalog(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut stack = vec![paths::REPOSITORIES.to_string()];
        while let Some(dir) = stack.pop() {
            let children = match self.driver.list(&dir) {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for child in children {
                let base = paths::base(&child);
                if base.starts_with('_') {
                    if base == "_manifests" || base == "_layers" {
                        let name = dir
                            .strip_prefix(&format!("{}/", paths::REPOSITORIES))
                            .unwrap_or(&dir)
                            .to_string();
                        if names.last() != Some(&name) {
                            names.push(name);
                        }
                    }
                } else if self.driver.stat(&child).is_ok_and(|i| i.is_dir) {
                    stack.push(child);
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
