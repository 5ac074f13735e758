//! Git contexts (`berth build https://host/repo.git#ref:subdir`, `github.com/o/r`,
//! `git@host:o/r`, `git://...`), cloned as the docker CLI (client side) and dockerd (`remote=`,
//! server side) do: `git init`, a shallow `fetch` of the ref, `checkout`, submodules, then the
//! subdirectory is the context. Errors are Docker's text (the callers add no context).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors are plain text, worded as Docker's.
pub type Result<T, E = String> = std::result::Result<T, E>;

/// The docker CLI's `IsGitURL`.
pub fn is_git_url(s: &str) -> bool {
    let is_url = s.starts_with("http://") || s.starts_with("https://");
    if is_url {
        let path = s.split('#').next().unwrap_or(s);
        if path.ends_with(".git") {
            return true;
        }
    }
    ["git://", "github.com/", "git@"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// A remote, the ref to check out (`master` by default, as docker) and the subdirectory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepo {
    pub remote: String,
    pub reference: String,
    pub subdir: String,
}

pub fn parse_remote(url: &str) -> Result<GitRepo> {
    let transport = ["git://", "http://", "https://", "ssh://"]
        .iter()
        .any(|p| url.starts_with(p))
        || url.starts_with("git@");
    let url = if transport {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let (remote, fragment) = match url.split_once('#') {
        Some((r, f)) => (r.to_string(), f.to_string()),
        None => (url.clone(), String::new()),
    };
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, s)) => (r.to_string(), s.to_string()),
        None => (fragment, String::new()),
    };
    let reference = if reference.is_empty() {
        "master".to_string()
    } else {
        reference
    };
    if reference.starts_with('-') {
        return Err(format!("invalid refspec: {reference}"));
    }
    Ok(GitRepo {
        remote,
        reference,
        subdir,
    })
}

/// A cloned repository, removed when dropped.
pub struct Checkout {
    pub root: PathBuf,
    /// The context: the root or the fragment's subdirectory.
    pub context: PathBuf,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn git(dir: &Path, allow_file: bool, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if !allow_file {
        // A repository must not pull files of this machine in as submodules.
        cmd.args(["-c", "protocol.file.allow=never"]);
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text.trim().to_string())
    }
}

/// Clones `repo` into a new temporary directory. `allow_file` lets tests use a local remote.
pub fn clone(repo: &GitRepo, allow_file: bool) -> Result<Checkout> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let root = std::env::temp_dir().join(format!(
        "berth-build-git-{}-{nanos:08x}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    clone_into(repo, &root, allow_file)
}

/// Clones `repo` into the directory `root` (created; removed with the returned checkout).
pub fn clone_into(repo: &GitRepo, root: &Path, allow_file: bool) -> Result<Checkout> {
    let root = root.to_path_buf();
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let checkout = Checkout {
        root: root.clone(),
        context: root.clone(),
    };
    let fail = |what: &str, e: String| {
        format!("unable to 'git clone' to temporary context directory: {what}: {e}")
    };
    git(&root, allow_file, &["init", "-q"]).map_err(|e| fail("failed to init repo", e))?;
    git(
        &root,
        allow_file,
        &["remote", "add", "origin", &repo.remote],
    )
    .map_err(|e| fail("failed add origin repo", e))?;
    // Plain HTTP servers cannot serve shallow fetches; every other transport can.
    let mut fetch = vec!["fetch"];
    if !repo.remote.starts_with("http://") {
        fetch.extend(["--depth", "1"]);
    }
    fetch.extend(["origin", "--", &repo.reference]);
    git(&root, allow_file, &fetch).map_err(|e| fail("error fetching", e))?;
    if let Err(e) = git(&root, allow_file, &["checkout", "-q", &repo.reference]) {
        git(&root, allow_file, &["checkout", "-q", "FETCH_HEAD"])
            .map_err(|_| fail(&format!("error checking out {}", repo.reference), e))?;
    }
    git(
        &root,
        allow_file,
        &["submodule", "update", "--init", "--recursive", "--depth=1"],
    )
    .map_err(|e| fail("error initializing submodules", e))?;
    let mut checkout = checkout;
    if !repo.subdir.is_empty() {
        let canon = |p: &Path| {
            std::fs::canonicalize(p).map_err(|e| format!("error setting git context: {e}"))
        };
        let sub = canon(&root.join(&repo.subdir))?;
        if !sub.starts_with(canon(&root)?) {
            return Err(format!(
                "error setting git context, {:?} not within git root",
                repo.subdir
            ));
        }
        if !sub.is_dir() {
            return Err(format!(
                "error setting git context, not a directory: {}",
                sub.display()
            ));
        }
        checkout.context = sub;
    }
    Ok(checkout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_docker_reads_them() {
        assert!(is_git_url("https://github.com/o/r.git"));
        assert!(is_git_url("https://host/r.git#main:sub"));
        assert!(is_git_url("github.com/o/r"));
        assert!(is_git_url("git@github.com:o/r.git"));
        assert!(is_git_url("git://host/r"));
        assert!(!is_git_url("https://host/context.tar.gz"));
        assert_eq!(
            parse_remote("github.com/o/r#v1:docker").unwrap(),
            GitRepo {
                remote: "https://github.com/o/r".into(),
                reference: "v1".into(),
                subdir: "docker".into()
            }
        );
        assert_eq!(parse_remote("git@h:o/r.git").unwrap().reference, "master");
        assert!(parse_remote("https://h/r.git#-x").is_err());
    }

    #[test]
    fn clones_a_ref_and_a_subdirectory() {
        if Command::new("git").arg("--version").output().is_err() {
            eprintln!("skipped: no git");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/Dockerfile"), "FROM scratch\n").unwrap();
        let run = |args: &[&str]| git(&src, true, args).unwrap();
        run(&["init", "-q", "-b", "main"]);
        run(&["-c", "user.email=a@b", "-c", "user.name=a", "add", "."]);
        run(&[
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "-m",
            "x",
        ]);
        let repo = GitRepo {
            remote: format!("file://{}", src.display()),
            reference: "main".into(),
            subdir: "sub".into(),
        };
        let co = clone(&repo, true).unwrap();
        assert!(co.context.join("Dockerfile").is_file());
        let root = co.root.clone();
        drop(co);
        assert!(!root.exists());
    }
}
