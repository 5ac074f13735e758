//! `cp`: copies between a container and the local filesystem through the archive endpoints,
//! with docker's destination rules (into an existing directory, or renamed to a new path) and
//! `-` for tar streams on stdin/stdout.

use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};
use berth_client::CopyToOptions;
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;

use super::Env;
use crate::format::units::human_size;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(
    override_usage = "berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no
    /// terminal is attached
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "SRC_PATH")]
    pub source: String,
    #[arg(value_name = "DEST_PATH")]
    pub destination: String,
}

/// `container:path`, or a local path (absolute or starting with `.` is always local).
pub fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.is_empty() => (Some(container), path),
        _ => (None, arg),
    }
}

fn fail(message: impl Into<String>) -> anyhow::Error {
    StatusError::error(1, message.into())
}

pub async fn cp(env: &Env, args: CpArgs) -> Result<()> {
    let (src_container, src_path) = split_cp_arg(&args.source);
    let (dst_container, dst_path) = split_cp_arg(&args.destination);
    match (src_container, dst_container) {
        (Some(_), Some(_)) => Err(fail("copying between containers is not supported")),
        (None, None) => Err(fail("must specify at least one container source")),
        (Some(c), None) => copy_from(env, &args, c, src_path, dst_path).await,
        (None, Some(c)) => copy_to(env, &args, src_path, c, dst_path).await,
    }
}

/// The entry path with its first component replaced (`name/a/b` → `rename/a/b`); `None` if
/// the path could escape the destination.
fn rebase(path: &Path, rename: Option<&str>) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for (i, component) in path.components().enumerate() {
        match component {
            Component::Normal(part) => {
                if i == 0
                    && let Some(name) = rename
                {
                    out.push(name);
                } else {
                    out.push(part);
                }
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Extracts a tar into `dir`, the root entry renamed when `rename` is given. Returns the bytes
/// of file content written.
pub fn extract(tar_bytes: &[u8], dir: &Path, rename: Option<&str>) -> Result<u64> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut total = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(relative) = rebase(&path, rename) else {
            return Err(fail(format!(
                "invalid archive entry {}: it escapes the destination",
                path.display()
            )));
        };
        if relative.as_os_str().is_empty() {
            continue;
        }
        total += entry.header().size().unwrap_or(0);
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("cannot extract {}", target.display()))?;
    }
    Ok(total)
}

async fn copy_from(env: &Env, args: &CpArgs, container: &str, src: &str, dst: &str) -> Result<()> {
    let client = env.client()?;
    let mut src_path = src.to_string();
    if args.follow_link {
        let stat = client
            .container_stat_path(container, &src_path)
            .await
            .map_err(|e| fail(describe_client_error(&e)))?;
        if stat.is_symlink() && !stat.link_target.is_empty() {
            src_path = stat.link_target.clone();
        }
    }
    let (stat, stream) = client
        .container_archive_get(container, &src_path)
        .await
        .map_err(|e| fail(describe_client_error(&e)))?;
    let mut stream = Box::pin(stream);
    if dst == "-" {
        if std::io::stdout().is_terminal() {
            return Err(fail(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect",
            ));
        }
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)?;
        }
        out.flush()?;
        return Ok(());
    }
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar_bytes.extend_from_slice(&chunk?);
    }
    let dst_path = Path::new(dst);
    let contents_only = src.ends_with("/.");
    let dst_is_dir = dst_path.is_dir();
    let (dir, rename): (PathBuf, Option<String>) = if contents_only {
        // `src/.`: the directory's contents go into dst (created when missing).
        std::fs::create_dir_all(dst_path)?;
        (dst_path.to_path_buf(), Some(".".to_string()))
    } else if dst_is_dir {
        (dst_path.to_path_buf(), None)
    } else {
        if dst.ends_with('/') {
            return Err(fail(format!("destination directory {dst:?} must exist")));
        }
        if dst_path.exists() && stat.is_dir() {
            return Err(fail(format!(
                "cannot copy directory to existing file {dst:?}"
            )));
        }
        let parent = dst_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(fail(format!(
                "destination directory {:?} must exist",
                parent.display().to_string()
            )));
        }
        let name = dst_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        (parent.to_path_buf(), Some(name))
    };
    let rename = rename.filter(|r| r != ".");
    let total = if contents_only {
        extract_contents(&tar_bytes, &dir)?
    } else {
        extract(&tar_bytes, &dir, rename.as_deref())?
    };
    if !args.quiet {
        output::err(&format!(
            "Successfully copied {} to {dst}\n",
            human_size(total as i64)
        ));
    }
    Ok(())
}

/// Extracts the root entry's children (the `src/.` form).
fn extract_contents(tar_bytes: &[u8], dir: &Path) -> Result<u64> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut total = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(relative) = rebase(&path, None) else {
            return Err(fail(format!("invalid archive entry {}", path.display())));
        };
        let inner: PathBuf = relative.components().skip(1).collect();
        if inner.as_os_str().is_empty() {
            continue;
        }
        total += entry.header().size().unwrap_or(0);
        let target = dir.join(inner);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        entry.unpack(&target)?;
    }
    Ok(total)
}

/// A tar of `src` whose root entry is called `name`.
pub fn pack(src: &Path, name: &str, follow: bool) -> Result<(Vec<u8>, u64)> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(follow);
    let meta = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(|e| {
        fail(format!(
            "lstat {}: {}",
            src.display(),
            super::os_error_text(&e)
        ))
    })?;
    let mut total = 0;
    if meta.is_dir() {
        builder.append_dir_all(name, src)?;
        for entry in walk(src)? {
            total += entry;
        }
    } else {
        total = meta.len();
        builder.append_path_with_name(src, name)?;
    }
    Ok((builder.into_inner()?, total))
}

fn walk(dir: &Path) -> Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            sizes.extend(walk(&entry.path())?);
        } else {
            sizes.push(meta.len());
        }
    }
    Ok(sizes)
}

async fn copy_to(env: &Env, args: &CpArgs, src: &str, container: &str, dst: &str) -> Result<()> {
    let client = env.client()?;
    let options = CopyToOptions {
        no_overwrite_dir_non_dir: true,
        copy_uid_gid: args.archive,
    };
    if src == "-" {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        let stream = futures_util::stream::once(async move { Ok(Bytes::from(data)) }).boxed();
        return client
            .container_archive_put(container, dst, stream, options)
            .await
            .map_err(|e| fail(describe_client_error(&e)));
    }
    let src_path = Path::new(src);
    if !src_path.exists() && std::fs::symlink_metadata(src_path).is_err() {
        return Err(fail(format!(
            "lstat {}: no such file or directory",
            std::path::absolute(src_path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| src.to_string())
        )));
    }
    let contents_only = src.ends_with("/.");
    let src_name = src_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| ".".to_string());
    let (target_dir, name) = match client.container_stat_path(container, dst).await {
        Ok(stat) if stat.is_dir() => (dst.to_string(), src_name.clone()),
        Ok(_) if src_path.is_dir() => {
            return Err(fail(format!(
                "cannot copy directory to existing file {dst:?}"
            )));
        }
        Ok(_) | Err(_) if !dst.ends_with('/') => {
            let path = Path::new(dst);
            let parent = path
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".to_string());
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            (parent, name)
        }
        Ok(_) => (dst.to_string(), src_name.clone()),
        Err(e) => return Err(fail(describe_client_error(&e))),
    };
    let follow = args.follow_link;
    let src_owned = src_path.to_path_buf();
    let (tar_bytes, total) = tokio::task::spawn_blocking(move || {
        if contents_only {
            pack_contents(&src_owned, follow)
        } else {
            pack(&src_owned, &name, follow)
        }
    })
    .await??;
    let target_dir = if contents_only {
        dst.to_string()
    } else {
        target_dir
    };
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(tar_bytes)) }).boxed();
    client
        .container_archive_put(container, &target_dir, stream, options)
        .await
        .map_err(|e| fail(describe_client_error(&e)))?;
    if !args.quiet {
        output::err(&format!(
            "Successfully copied {} to {container}:{dst}\n",
            human_size(total as i64)
        ));
    }
    Ok(())
}

/// The `src/.` form: the directory's children at the tar's root.
fn pack_contents(src: &Path, follow: bool) -> Result<(Vec<u8>, u64)> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(follow);
    builder.append_dir_all(".", src)?;
    let total = walk(src)?.iter().sum();
    Ok((builder.into_inner()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cp_arguments_like_docker() {
        assert_eq!(split_cp_arg("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_cp_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp_arg("./x:y"), (None, "./x:y"));
        assert_eq!(split_cp_arg("file"), (None, "file"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn pack_and_extract_round_trip_with_rename() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "hello").unwrap();
        let (tar_bytes, total) = pack(&src, "src", false).unwrap();
        assert_eq!(total, 5);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        extract(&tar_bytes, &out, Some("renamed")).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("renamed/sub/f")).unwrap(),
            "hello"
        );
        assert!(rebase(Path::new("../evil"), None).is_none());
    }
}
