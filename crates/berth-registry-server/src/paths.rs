//! Where everything lives in a [`crate::driver::StorageDriver`] — the one place that knows
//! the layout (distribution's `paths.go`). Components are validated names, tags, digests and
//! upload ids only.
//!
//! ```text
//! /blobs/<alg>/<hex[0:2]>/<hex>/data                           bytes of every blob and manifest
//! /repositories/<name>/_layers/<alg>/<hex>/link                blob belongs to the repository
//! /repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifest in the repository: its media type
//! /repositories/<name>/_manifests/tags/<tag>/current/link      the tag: a digest
//! /repositories/<name>/_referrers/<alg>/<hex>/<alg>/<hex>/link a referrer of a subject: its descriptor
//! /repositories/<name>/_uploads/<id>/data                      an upload in progress
//! ```

use crate::digest::Digest;

pub const BLOBS: &str = "/blobs";
pub const REPOSITORIES: &str = "/repositories";

pub fn blob_dir(d: &Digest) -> String {
    format!(
        "{BLOBS}/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

pub fn blob_data(d: &Digest) -> String {
    format!("{}/data", blob_dir(d))
}

pub fn repo(name: &str) -> String {
    format!("{REPOSITORIES}/{name}")
}

pub fn layers(name: &str) -> String {
    format!("{}/_layers", repo(name))
}

pub fn layer_link(name: &str, d: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        layers(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn revisions(name: &str) -> String {
    format!("{}/_manifests/revisions", repo(name))
}

pub fn revision_link(name: &str, d: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        revisions(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn tags(name: &str) -> String {
    format!("{}/_manifests/tags", repo(name))
}

pub fn tag_dir(name: &str, tag: &str) -> String {
    format!("{}/{tag}", tags(name))
}

pub fn tag_link(name: &str, tag: &str) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

pub fn referrers_of(name: &str, subject: &Digest) -> String {
    format!(
        "{}/_referrers/{}/{}",
        repo(name),
        subject.algorithm().as_str(),
        subject.hex()
    )
}

pub fn referrer_link(name: &str, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        referrers_of(name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

pub fn uploads(name: &str) -> String {
    format!("{}/_uploads", repo(name))
}

pub fn upload_dir(name: &str, id: &str) -> String {
    format!("{}/{id}", uploads(name))
}

pub fn upload_data(name: &str, id: &str) -> String {
    format!("{}/data", upload_dir(name, id))
}

/// The digest named by a `<alg>/<hex>` pair of path components, as listed back.
pub fn digest_from(alg: &str, hex: &str) -> Option<Digest> {
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The last component of a listed path.
pub fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The directory of a blob's link in a repository (deleted to unlink it).
pub fn layer_dir_of(name: &str, d: &Digest) -> String {
    format!("{}/{}/{}", layers(name), d.algorithm().as_str(), d.hex())
}

/// The directory of a manifest's revision record (deleted with the manifest).
pub fn revision_dir_of(name: &str, d: &Digest) -> String {
    format!("{}/{}/{}", revisions(name), d.algorithm().as_str(), d.hex())
}
