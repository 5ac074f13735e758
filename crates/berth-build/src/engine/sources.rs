//! COPY/ADD sources: which files of the context (or of a stage's root) a COPY selects, where
//! each lands, and the content digest that goes into the step's cache key.
//!
//! The digest covers, per file in walk order, its path below the destination, its type, its
//! *effective* mode and owner (after `--chmod`/`--chown`, so a source mode that `--chmod`
//! overrides never busts the cache) and its content (symlinks: their target). Never mtimes,
//! so touching a file keeps the cache.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::executor::CopyItem;

/// The selected sources of one COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub items: Vec<CopyItem>,
    /// hex sha256 over the items' content and effective metadata.
    pub digest: String,
    /// `file`, `dir` or `multi`, as Docker's history names the source (`COPY file:<hex> in`).
    pub kind: &'static str,
}

/// What decides the digest besides content.
#[derive(Debug, Clone, Default)]
pub struct Effective<'a> {
    pub chmod: Option<u32>,
    /// `--chown` as written (resolved by the executor; the text is what the key needs).
    pub chown: Option<&'a str>,
    /// `--exclude` patterns.
    pub exclude: &'a [String],
    /// ADD: extract local archives.
    pub add: bool,
}

/// Cleans `p` (relative to a root): `..` may not climb above it. Returns None if it does.
fn clean_relative(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The absolute destination of a COPY, relative ones taken from `workdir`; keeps a trailing
/// `/` (which says "a directory").
pub fn absolute_dest(dest: &str, workdir: &str) -> String {
    let dir_like = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest == "..";
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), dest)
    };
    let mut cleaned = clean_absolute(&joined);
    if dir_like && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// `/a/./b/../c` → `/a/c`.
pub fn clean_absolute(p: &str) -> String {
    let rel = clean_relative(p).unwrap_or_default();
    format!("/{}", rel.to_string_lossy())
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
pub fn match_component(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in p) for p starting after '['.
        let mut i = 0;
        let negate = matches!(p.first(), Some('^' | '!'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let mut lo = p[i];
            if lo == '\\' && i + 1 < p.len() {
                i += 1;
                lo = p[i];
            }
            let mut hi = lo;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                hi = p[i + 2];
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 1;
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (
                n.first(),
                class(&p[1..], n.first().copied().unwrap_or('\0')),
            ) {
                (Some(_), Some((true, len))) => go(&p[1 + len..], &n[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// Matches a `/`-separated pattern against a relative path, component by component.
pub fn match_path(pattern: &str, path: &str) -> bool {
    let pc: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let nc: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    fn go(p: &[&str], n: &[&str]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(&"**") => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some(c) => !n.is_empty() && match_component(c, n[0]) && go(&p[1..], &n[1..]),
        }
    }
    go(&pc, &nc)
}

/// Expands a wildcard source against `root`: the relative paths that match, sorted.
fn glob(root: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let comps: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut found = vec![PathBuf::new()];
    for c in comps {
        let mut next = Vec::new();
        for base in &found {
            if !has_wildcard(c) {
                let p = base.join(c);
                if root.join(&p).symlink_metadata().is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = root.join(base);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            next.extend(
                names
                    .into_iter()
                    .filter(|n| match_component(c, n))
                    .map(|n| base.join(n)),
            );
        }
        found = next;
    }
    Ok(found)
}

/// Whether a file starts like an archive ADD extracts (tar, gzip, bzip2, xz, zstd).
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar")
}

/// Selects the sources of a COPY/ADD below `root`; `dest` is absolute (see
/// [`absolute_dest`]). Errors are Docker's words without the `COPY failed: ` prefix.
pub fn select(
    root: &Path,
    sources: &[String],
    dest: &str,
    eff: &Effective<'_>,
) -> Result<Selection, String> {
    let mut rels: Vec<PathBuf> = Vec::new();
    let mut wildcard = false;
    for src in sources {
        if has_wildcard(src) {
            wildcard = true;
            let matches =
                glob(root, src).map_err(|e| format!("cannot read the build context: {e}"))?;
            if matches.is_empty() {
                return Err(format!(
                    "no source files were specified (no match for {src})"
                ));
            }
            rels.extend(matches);
            continue;
        }
        let rel = clean_relative(src)
            .filter(|_| !src.starts_with("../") && src != "..")
            .ok_or_else(|| format!("forbidden path outside the build context: {src} ()"))?;
        if root.join(&rel).symlink_metadata().is_err() {
            return Err(format!(
                "file not found in build context or excluded by .dockerignore: stat {src}: \
                 file does not exist"
            ));
        }
        rels.push(rel);
    }
    let many = rels.len() > 1 || wildcard;
    if many && !dest.ends_with('/') {
        // Docker allows a single wildcard match into a non-directory destination.
        if !(wildcard && rels.len() == 1) {
            return Err(
                "When using COPY with more than one source file, the destination must be a \
                 directory and end with a /"
                    .into(),
            );
        }
    }
    let mut items = Vec::new();
    let mut kind = "file";
    for rel in &rels {
        let src = root.join(rel);
        let meta = fs::metadata(&src)
            .or_else(|_| src.symlink_metadata())
            .map_err(|e| format!("cannot stat {}: {e}", rel.display()))?;
        let dest_of = |name: &str| {
            if dest.ends_with('/') {
                format!("{dest}{name}")
            } else {
                dest.to_string()
            }
        };
        if meta.is_dir() {
            kind = "dir";
            items.push(CopyItem {
                src,
                dest: dest.trim_end_matches('/').to_string().if_empty("/"),
                extract: false,
                into_existing_dir: false,
            });
        } else {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let extract = eff.add && is_archive(&src);
            items.push(CopyItem {
                dest: if extract {
                    dest.trim_end_matches('/').to_string().if_empty("/")
                } else {
                    dest_of(&name)
                },
                src,
                extract,
                into_existing_dir: !dest.ends_with('/'),
            });
        }
    }
    if items.len() > 1 {
        kind = "multi";
    }
    let digest = digest_items(&items, eff).map_err(|e| format!("cannot read source: {e}"))?;
    Ok(Selection {
        items,
        digest,
        kind,
    })
}

trait IfEmpty {
    fn if_empty(self, d: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, d: &str) -> String {
        if self.is_empty() { d.to_string() } else { self }
    }
}

/// Whether `rel` (below a copied directory) is left out by `--exclude`.
pub fn excluded(patterns: &[String], rel: &str) -> bool {
    patterns.iter().any(|p| match_path(p, rel))
}

fn digest_items(items: &[CopyItem], eff: &Effective<'_>) -> io::Result<String> {
    let mut h = Sha256::new();
    let owner = eff.chown.unwrap_or("0:0");
    for item in items {
        h.update(format!("item\0{}\0{}\0", item.dest, item.extract as u8));
        digest_tree(&mut h, &item.src, "", eff, owner)?;
    }
    Ok(hex::encode(h.finalize()))
}

fn digest_tree(
    h: &mut Sha256,
    path: &Path,
    rel: &str,
    eff: &Effective<'_>,
    owner: &str,
) -> io::Result<()> {
    let meta = path.symlink_metadata()?;
    let ft = meta.file_type();
    let mode = eff.chmod.unwrap_or(meta.permissions().mode() & 0o7777);
    let (kind, size) = if ft.is_dir() {
        ('d', 0)
    } else if ft.is_symlink() {
        ('l', 0)
    } else {
        ('f', meta.size())
    };
    h.update(format!("{rel}\0{kind}\0{mode:o}\0{owner}\0{size}\0"));
    if ft.is_symlink() {
        h.update(fs::read_link(path)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        let mut f = fs::File::open(path)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if excluded(eff.exclude, &child) {
                continue;
            }
            digest_tree(h, &path.join(&n), &child, eff, owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.txt"), b"a").unwrap();
        fs::write(d.path().join("b.txt"), b"b").unwrap();
        fs::create_dir(d.path().join("dir")).unwrap();
        fs::write(d.path().join("dir/c"), b"c").unwrap();
        d
    }

    #[test]
    fn destinations_follow_docker() {
        assert_eq!(absolute_dest("x", "/app"), "/app/x");
        assert_eq!(absolute_dest(".", "/app"), "/app/");
        assert_eq!(absolute_dest("/d/", "/app"), "/d/");
        assert_eq!(absolute_dest("y/", "/"), "/y/");
        let d = ctx();
        let eff = Effective::default();
        let s = select(d.path(), &["a.txt".into()], "/x/", &eff).unwrap();
        assert_eq!(s.items[0].dest, "/x/a.txt");
        let s = select(d.path(), &["a.txt".into()], "/x", &eff).unwrap();
        assert_eq!(s.items[0].dest, "/x");
        let s = select(d.path(), &["*.txt".into()], "/x/", &eff).unwrap();
        assert_eq!(s.items.len(), 2);
        assert_eq!(s.kind, "multi");
        let s = select(d.path(), &["dir".into()], "/x", &eff).unwrap();
        assert_eq!((s.items[0].dest.as_str(), s.kind), ("/x", "dir"));
    }

    #[test]
    fn bad_sources_are_docker_errors() {
        let d = ctx();
        let eff = Effective::default();
        let e = select(d.path(), &["../x".into()], "/", &eff).unwrap_err();
        assert_eq!(e, "forbidden path outside the build context: ../x ()");
        let e = select(d.path(), &["nope".into()], "/", &eff).unwrap_err();
        assert!(e.starts_with("file not found in build context"), "{e}");
        let e = select(d.path(), &["a.txt".into(), "b.txt".into()], "/x", &eff).unwrap_err();
        assert!(e.contains("must be a directory and end with a /"), "{e}");
    }

    #[test]
    fn digest_ignores_mtime_and_overridden_mode_but_not_content() {
        let d = ctx();
        let p = d.path().join("a.txt");
        let chmod = Effective {
            chmod: Some(0o644),
            ..Default::default()
        };
        let before = select(d.path(), &["a.txt".into()], "/", &chmod).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let after = select(d.path(), &["a.txt".into()], "/", &chmod).unwrap();
        assert_eq!(before.digest, after.digest);
        let plain = select(d.path(), &["a.txt".into()], "/", &Effective::default()).unwrap();
        assert_ne!(plain.digest, after.digest);
        fs::write(&p, b"changed").unwrap();
        let changed = select(d.path(), &["a.txt".into()], "/", &chmod).unwrap();
        assert_ne!(changed.digest, after.digest);
    }

    #[test]
    fn wildcards_match_as_go() {
        assert!(match_component("*.txt", "a.txt"));
        assert!(!match_component("*.txt", "a.tx"));
        assert!(match_component("[a-c]?", "bz"));
        assert!(!match_component("[^a-c]?", "bz"));
        assert!(match_path("**/*.go", "a/b/c.go"));
        assert!(match_path("a/*/c", "a/b/c"));
    }
}
