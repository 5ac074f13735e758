//! `RUN --mount=type=secret` and `--mount=type=ssh` made real for one step: the secrets the
//! session gives are written to a tmpfs of the step's own (never to disk) and bind-mounted
//! read-only; each ssh mount is a socket on that tmpfs whose connections are forwarded to the
//! client's agent through the session. Everything goes when the step's [`StepSecrets`] drops.
//!
//! A secret with `env=` reaches the command through a `/bin/sh` wrapper that reads it from
//! the tmpfs into the variable, so the value never enters the build container's config
//! (which the container record keeps on disk). The mount points the runtime creates for the
//! targets are removed from the step's diff before the commit ([`StepSecrets::remove_stubs`]),
//! so the image keeps no trace of them (BuildKit does the same).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_api::models::container::Mount;
use berth_build::executor::{ExecError, StepMount};

use super::layer::ParentView;
use super::session;

/// Where the env copies of secrets appear in the build container: `/dev` is the container's
/// own tmpfs, so their mount points never reach the step's diff.
const ENV_DIR: &str = "/dev/.berth-secret-env";

pub struct StepSecrets {
    dir: Option<PathBuf>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Container mounts to add.
    pub mounts: Vec<Mount>,
    /// `(VAR, path in the container)` of the secrets that set a variable.
    pub env_files: Vec<(String, String)>,
    /// Paths (no leading `/`) the mounts create that the parent image does not have, deepest
    /// last.
    stubs: Vec<String>,
}

impl Drop for StepSecrets {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(dir) = &self.dir {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `<exec-root>/build-secrets`: the steps' tmpfs mounts (left ones are unmounted at start).
pub fn secrets_root(exec_root: &Path) -> PathBuf {
    exec_root.join("build-secrets")
}

/// Unmounts and removes the tmpfs mounts of steps a crash interrupted.
pub fn remove_leftovers(exec_root: &Path) {
    let root = secrets_root(exec_root);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for e in entries.flatten() {
        let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(e.path());
    }
}

fn err(e: impl std::fmt::Display) -> ExecError {
    ExecError::new(e.to_string())
}

fn valid_env_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prepares the secret and ssh mounts of a step (other mounts are left to the caller).
pub async fn prepare(
    exec_root: &Path,
    session: Option<&str>,
    mounts: &[StepMount],
    parent: &ParentView,
) -> Result<StepSecrets, ExecError> {
    let mut out = StepSecrets {
        dir: None,
        tasks: Vec::new(),
        mounts: Vec::new(),
        env_files: Vec::new(),
        stubs: Vec::new(),
    };
    let mut targets = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        match m {
            StepMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(value) = session::secret(session, id).await.map_err(err)? else {
                    if *required {
                        return Err(ExecError::new(format!("secret {id}: not found")));
                    }
                    continue;
                };
                let dir = tmpfs(exec_root, &mut out)?;
                if let Some(target) = target {
                    let file = dir.join(format!("secret-{i}"));
                    write_file(&file, &value, *mode, *uid, *gid)?;
                    out.mounts.push(bind(&file, target, true));
                    targets.push(target.clone());
                }
                if let Some(var) = env {
                    if !valid_env_name(var) {
                        return Err(ExecError::new(format!("invalid secret env name {var:?}")));
                    }
                    // Read by the wrapper as the RUN's user, whoever that is.
                    let file = dir.join(format!("env-{i}"));
                    write_file(&file, &value, 0o444, 0, 0)?;
                    let inside = format!("{ENV_DIR}-{i}");
                    out.mounts.push(bind(&file, &inside, true));
                    out.env_files.push((var.clone(), inside));
                }
            }
            StepMount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                if !session::has_agent(session, id).await.map_err(err)? {
                    if *required {
                        return Err(ExecError::new(format!(
                            "no SSH key {id:?} forwarded from the client"
                        )));
                    }
                    continue;
                }
                let dir = tmpfs(exec_root, &mut out)?;
                let sock = dir.join(format!("ssh-{i}"));
                let listener = tokio::net::UnixListener::bind(&sock).map_err(err)?;
                std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(*mode))
                    .map_err(err)?;
                std::os::unix::fs::chown(&sock, Some(*uid), Some(*gid)).map_err(err)?;
                let (session, id) = (session.unwrap_or_default().to_string(), id.clone());
                out.tasks.push(tokio::spawn(async move {
                    // Dropping the set (the step ended) ends the forwarded connections.
                    let mut conns = tokio::task::JoinSet::new();
                    while let Ok((conn, _)) = listener.accept().await {
                        let (s, i) = (session.clone(), id.clone());
                        conns.spawn(async move {
                            if let Err(e) = session::forward_agent(s, i, conn).await {
                                tracing::debug!(error = %e, "ssh agent forwarding ended");
                            }
                        });
                    }
                }));
                out.mounts.push(bind(&sock, target, false));
                targets.push(target.clone());
            }
            _ => {}
        }
    }
    // The mount points the runtime will create, for removal before the commit.
    for t in targets {
        let rel = t.trim_matches('/');
        let mut prefix = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if parent.stat(&prefix).is_none() && !out.stubs.contains(&prefix) {
                out.stubs.push(prefix.clone());
            }
        }
    }
    Ok(out)
}

impl StepSecrets {
    /// The argv that first sets the `env=` secrets (read from their files) and then runs
    /// `argv`; `argv` itself when there are none.
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        if self.env_files.is_empty() {
            return argv;
        }
        let mut script = String::new();
        for (var, path) in &self.env_files {
            // `$(...)` drops trailing newlines; the `.` keeps them, as BuildKit's value.
            script.push_str(&format!(
                "{var}=\"$(cat {path}; echo .)\"; {var}=\"${{{var}%.}}\"; export {var}; "
            ));
        }
        script.push_str("exec \"$@\"");
        let mut out = vec!["/bin/sh".into(), "-c".into(), script, "sh".into()];
        out.extend(argv);
        out
    }

    /// Removes the empty mount points of secret and ssh targets from the step's diff.
    pub fn remove_stubs(&self, upper: &Path) {
        for rel in self.stubs.iter().rev() {
            let p = upper.join(rel);
            let Ok(meta) = p.symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                let _ = std::fs::remove_dir(&p);
            } else if meta.len() == 0 {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn tmpfs(exec_root: &Path, out: &mut StepSecrets) -> Result<PathBuf, ExecError> {
    if let Some(d) = &out.dir {
        return Ok(d.clone());
    }
    let name = hex::encode(rand::random::<[u8; 8]>());
    let dir = secrets_root(exec_root).join(name);
    std::fs::create_dir_all(&dir).map_err(err)?;
    out.dir = Some(dir.clone());
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("mode=0700,size=16m"),
    )
    .map_err(|e| ExecError::new(format!("mounting a tmpfs for the step's secrets: {e}")))?;
    Ok(dir)
}

fn write_file(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), ExecError> {
    std::fs::write(path, data).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(err)
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        kind: "bind".into(),
        source: source.to_string_lossy().into_owned(),
        target: target.to_string(),
        read_only,
        ..Default::default()
    }
}
