//! Turning `berth build`'s `PATH | URL | -` and `-f` into what `POST /build` receives, as the
//! docker CLI does:
//!
//! - a directory: its tar (`.dockerignore` applied, the Dockerfile and `.dockerignore` kept),
//!   `-f` relative to the current directory; a Dockerfile outside the context or from stdin
//!   (`-f -`) is added under a random `.dockerfile.<hex>` name that the context's
//!   `.dockerignore` then lists, so `COPY . .` does not pick it up;
//! - `-`: stdin, sent as is when it is an archive (tar, gzip, bzip2, xz, zstd), or taken as a
//!   Dockerfile alone;
//! - an `http(s)://` URL: fetched by the daemon (`remote=`), no body.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use berth_build::context::{Entry, append, walk};
use berth_build::dockerignore::Dockerignore;

use crate::commands::os_error_text;

/// Where the context comes from, decided before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextKind {
    Stdin,
    Remote(String),
    Dir(PathBuf),
}

/// Classifies the positional argument as the docker CLI's `DetectContextType`.
pub fn detect(arg: &str) -> Result<ContextKind> {
    if arg == "-" {
        return Ok(ContextKind::Stdin);
    }
    // A local directory wins over a name that looks like a URL, as in the docker CLI.
    if Path::new(arg).is_dir() {
        return Ok(ContextKind::Dir(PathBuf::from(arg)));
    }
    if super::git::is_git_url(arg) || arg.starts_with("http://") || arg.starts_with("https://") {
        return Ok(ContextKind::Remote(arg.to_string()));
    }
    bail!("unable to prepare context: path {arg:?} not found")
}

/// A directory context, resolved.
#[derive(Debug)]
pub struct DirContext {
    pub root: PathBuf,
    /// The Dockerfile's path in the context (`dockerfile=`), when it is inside it.
    pub dockerfile_rel: Option<String>,
    /// A Dockerfile that is not in the context (outside it, or `-f -`): its text, to add.
    pub extra_dockerfile: Option<Vec<u8>>,
    pub ignore: Dockerignore,
}

/// The Dockerfile path `-f` names, or the default, relative to the context as the CLI
/// resolves it (relative `-f` against the current directory; `Dockerfile`, else
/// `dockerfile`, in the context by default). Returns the absolute, symlink-free path.
pub fn locate_dockerfile(root: &Path, given: Option<&str>) -> Result<PathBuf> {
    let path = match given.filter(|g| !g.is_empty()) {
        Some(g) => std::path::absolute(g)?,
        None => {
            let default = root.join("Dockerfile");
            let lower = root.join("dockerfile");
            if default.symlink_metadata().is_err() && lower.symlink_metadata().is_ok() {
                lower
            } else {
                default
            }
        }
    };
    std::fs::canonicalize(&path).map_err(|e| {
        anyhow!(
            "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {}",
            path.display(),
            os_error_text(&e)
        )
    })
}

/// Resolves a directory context; `dockerfile_stdin` is the text read for `-f -`.
pub fn dir_context(
    dir: &Path,
    file: Option<&str>,
    dockerfile_stdin: Option<Vec<u8>>,
) -> Result<DirContext> {
    let root = std::fs::canonicalize(dir).map_err(|e| {
        anyhow!(
            "unable to prepare context: {}: {}",
            dir.display(),
            os_error_text(&e)
        )
    })?;
    let (dockerfile_rel, extra, abs) = match dockerfile_stdin {
        Some(text) => (None, Some(text), None),
        None => {
            let abs = locate_dockerfile(&root, file)?;
            match abs.strip_prefix(&root) {
                Ok(rel) if !rel.as_os_str().is_empty() => {
                    (Some(rel.to_string_lossy().into_owned()), None, Some(abs))
                }
                _ => {
                    let text = std::fs::read(&abs)
                        .map_err(|e| anyhow!("unable to open Dockerfile: {}", os_error_text(&e)))?;
                    (None, Some(text), Some(abs))
                }
            }
        }
    };
    let (ignore, _) = Dockerignore::load(&root, abs.as_deref())
        .map_err(|e| anyhow!("error reading .dockerignore: {e}"))?;
    Ok(DirContext {
        root,
        dockerfile_rel,
        extra_dockerfile: extra,
        ignore,
    })
}

/// `.dockerfile.` and 20 hex characters, unique enough for one context.
pub fn random_dockerfile_name() -> String {
    use sha2::Digest as _;
    let seed = format!(
        "{:?}{}{:p}",
        std::time::SystemTime::now(),
        std::process::id(),
        &std::time::Instant::now()
    );
    let hex = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!(".dockerfile.{}", &hex[..20])
}

impl DirContext {
    /// Writes the context tar; returns the `dockerfile=` value to send.
    pub fn write_tar<W: Write>(&self, writer: W, extra_name: &str) -> io::Result<String> {
        let mut keep = vec![".dockerignore"];
        if let Some(rel) = &self.dockerfile_rel {
            keep.push(rel);
        }
        let ignore = self.ignore.with_exceptions(&keep);
        let mut tar = tar::Builder::new(writer);
        let mut dockerignore: Option<Entry> = None;
        for entry in walk(&self.root, &ignore) {
            let entry = entry?;
            if self.extra_dockerfile.is_some() && entry.rel == ".dockerignore" {
                // Rewritten below, with the added Dockerfile's name in it.
                dockerignore = Some(entry);
                continue;
            }
            append(&mut tar, &entry)?;
        }
        let name = match (&self.extra_dockerfile, &self.dockerfile_rel) {
            (Some(text), _) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                add_file(&mut tar, extra_name, 0o600, now, text)?;
                let mut ignore_text = match &dockerignore {
                    Some(e) => std::fs::read(&e.path)?,
                    None => Vec::new(),
                };
                ignore_text.extend_from_slice(format!("\n{extra_name}\n").as_bytes());
                add_file(&mut tar, ".dockerignore", 0o600, now, &ignore_text)?;
                extra_name.to_string()
            }
            (None, Some(rel)) => rel.clone(),
            (None, None) => "Dockerfile".to_string(),
        };
        tar.finish()?;
        Ok(name)
    }
}

fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    mtime: u64,
    data: &[u8],
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, name, data)
}

/// The first bytes of stdin say whether it is an archive (compressed, or a tar whose first
/// header checksums right) rather than a Dockerfile.
pub fn is_archive(head: &[u8]) -> bool {
    let magic: &[&[u8]] = &[
        &[0x1f, 0x8b, 0x08],
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    if magic.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    if head.len() < 512 {
        return false;
    }
    let header = &head[..512];
    let field = &header[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// Reads up to 512 bytes: enough to tell an archive from a Dockerfile.
pub fn read_head(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    Ok(head)
}

/// A context holding only a Dockerfile (`berth build - < Dockerfile`).
pub fn dockerfile_only_tar(text: &[u8]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    add_file(&mut tar, "Dockerfile", 0o644, now, text)?;
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn directory_context_honours_dockerignore_and_keeps_build_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            root.join(".dockerignore"),
            "Dockerfile\n.dockerignore\n*.log\n",
        )
        .unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("debug.log"), "x").unwrap();
        let ctx = dir_context(root, None, None).unwrap();
        let mut buf = Vec::new();
        let name = ctx.write_tar(&mut buf, "unused").unwrap();
        assert_eq!(name, "Dockerfile");
        let got: Vec<String> = names(&buf).into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, [".dockerignore", "Dockerfile", "a.txt"]);
    }

    #[test]
    fn dockerfile_outside_or_from_stdin_is_added_under_a_random_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join(".dockerignore"), "*.log").unwrap();
        let outside = dir.path().join("Dockerfile.other");
        std::fs::write(&outside, "FROM busybox\n").unwrap();
        let ctx = dir_context(&root, Some(outside.to_str().unwrap()), None).unwrap();
        assert!(ctx.dockerfile_rel.is_none());
        let mut buf = Vec::new();
        let name = ctx
            .write_tar(&mut buf, ".dockerfile.0123456789abcdef0123")
            .unwrap();
        assert_eq!(name, ".dockerfile.0123456789abcdef0123");
        let got = names(&buf);
        assert_eq!(got[0], ("a.txt".to_string(), b"a".to_vec()));
        assert_eq!(got[1], (name.clone(), b"FROM busybox\n".to_vec()));
        assert_eq!(
            got[2],
            (
                ".dockerignore".to_string(),
                format!("*.log\n{name}\n").into_bytes()
            )
        );

        let ctx = dir_context(&root, Some("-"), Some(b"FROM scratch\n".to_vec())).unwrap();
        let mut buf = Vec::new();
        let name = ctx.write_tar(&mut buf, ".dockerfile.x").unwrap();
        assert_eq!(names(&buf)[1], (name, b"FROM scratch\n".to_vec()));
        assert!(
            random_dockerfile_name().starts_with(".dockerfile.")
                && random_dockerfile_name().len() == 32
        );
    }

    #[test]
    fn errors_in_the_cli_words() {
        let dir = tempfile::tempdir().unwrap();
        let e = dir_context(dir.path(), None, None).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat "
            ),
            "{e}"
        );
        assert!(e.ends_with("/Dockerfile: no such file or directory"), "{e}");
        assert_eq!(
            detect("/nonexistent/ctx").unwrap_err().to_string(),
            "unable to prepare context: path \"/nonexistent/ctx\" not found"
        );
        assert_eq!(detect("-").unwrap(), ContextKind::Stdin);
        assert_eq!(
            detect("https://x/y.tar").unwrap(),
            ContextKind::Remote("https://x/y.tar".into())
        );
        // Lower-case `dockerfile` is found too.
        std::fs::write(dir.path().join("dockerfile"), "FROM scratch").unwrap();
        let ctx = dir_context(dir.path(), None, None).unwrap();
        assert_eq!(ctx.dockerfile_rel.as_deref(), Some("dockerfile"));
    }

    #[test]
    fn stdin_archive_detection() {
        let tar = dockerfile_only_tar(b"FROM scratch\n").unwrap();
        assert!(is_archive(&tar[..512]));
        assert_eq!(
            names(&tar),
            [("Dockerfile".to_string(), b"FROM scratch\n".to_vec())]
        );
        assert!(is_archive(&[0x1f, 0x8b, 0x08, 0]));
        assert!(!is_archive(b"FROM scratch\nRUN true\n"));
        let mut r: &[u8] = b"short";
        assert_eq!(read_head(&mut r).unwrap(), b"short");
    }
}
