//! The crate's error type. Each variant maps onto one engine-wide [`ErrorKind`].

use std::path::PathBuf;

use berth_api::ErrorKind;

/// Result alias for this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong while preparing, starting or supervising a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container's configuration asks for something impossible (unknown capability, bad option).
    #[error("invalid container configuration: {0}")]
    InvalidConfig(String),

    /// A seccomp profile could not be parsed or converted.
    #[error("invalid seccomp profile: {0}")]
    Seccomp(String),

    /// The container's command does not resolve to a file in its root filesystem
    /// (Docker answers this with exit code 127).
    #[error(
        "exec: \"{name}\": executable file not found in $PATH: unable to start container process"
    )]
    ExecutableNotFound {
        /// The command as given (`args[0]`).
        name: String,
    },

    /// The container's command exists but cannot be executed (Docker answers with exit code 126).
    #[error("exec: \"{name}\": permission denied: unable to start container process")]
    ExecutableNotRunnable {
        /// The command as given (`args[0]`).
        name: String,
    },

    /// The runtime could not start an exec's process for a reason other than its command
    /// (its working directory is missing, say): `reason` in runc's words, e.g. `chdir to cwd
    /// ("/nope") set in config.json failed: no such file or directory`.
    #[error("unable to start container process: {reason}")]
    ExecStart {
        /// Why, as runc words it.
        reason: String,
    },

    /// A system call on a named path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("mount overlay on", "create", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The OCI runtime (libcontainer) refused to create or start the container.
    #[error("cannot start container {id}: {message}")]
    Create {
        /// Container id.
        id: String,
        /// The runtime's account of the failure, including its causes.
        message: String,
    },

    /// The shim could not be started, or answered something unexpected.
    #[error("container shim for {}: {message}", bundle.display())]
    Shim {
        /// The container's bundle directory.
        bundle: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// The container is not running (not started yet, or exited): exec and attach refuse it
    /// (Docker answers 409).
    #[error("container {id} is not running")]
    NotRunning {
        /// Container id.
        id: String,
    },

    /// No exec with this id was started in the container.
    #[error("no such exec instance: {exec_id}")]
    NoSuchExec {
        /// The exec id.
        exec_id: String,
    },

    /// An exec with this id already exists in the container.
    #[error("exec instance {exec_id} already exists")]
    ExecExists {
        /// The exec id.
        exec_id: String,
    },

    /// The log driver (or one of its options) is not implemented by Berth.
    #[error("log driver {driver:?} is not supported by berth")]
    LogDriverNotSupported {
        /// The driver name as given.
        driver: String,
    },

    /// A shim helper process (create, start, exec, delete) failed; see `shim::helper`.
    #[error("{what}: {message}")]
    Helper {
        /// The helper's work.
        what: String,
        /// What went wrong.
        message: String,
    },

    /// No shim is serving this bundle and no exit record exists.
    #[error("container shim for {} is not running and left no exit record", bundle.display())]
    ShimGone {
        /// The container's bundle directory.
        bundle: PathBuf,
    },
}

impl RuntimeError {
    /// The engine-wide class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::InvalidConfig(_) | RuntimeError::Seccomp(_) => ErrorKind::InvalidArgument,
            RuntimeError::ExecutableNotFound { .. }
            | RuntimeError::ExecutableNotRunnable { .. }
            | RuntimeError::ExecStart { .. } => ErrorKind::InvalidArgument,
            RuntimeError::ShimGone { .. } | RuntimeError::NoSuchExec { .. } => ErrorKind::NotFound,
            RuntimeError::NotRunning { .. } | RuntimeError::ExecExists { .. } => {
                ErrorKind::Conflict
            }
            RuntimeError::LogDriverNotSupported { .. } => ErrorKind::NotImplemented,
            RuntimeError::Io { .. }
            | RuntimeError::Create { .. }
            | RuntimeError::Shim { .. }
            | RuntimeError::Helper { .. } => ErrorKind::Internal,
        }
    }

    /// The exit code Docker reports for a container or exec that failed to start this way:
    /// 127 for a missing command, 126 for a command that cannot run, otherwise `None`. For
    /// other start failures Docker judges runc's words (`setExitCodeFromError`): "permission
    /// denied" or "is a directory" → 126; "not a directory", "no such file or directory",
    /// "executable file not found" → 127; anything else 128.
    pub fn docker_exit_code(&self) -> Option<i32> {
        match self {
            RuntimeError::ExecutableNotFound { .. } => Some(127),
            RuntimeError::ExecutableNotRunnable { .. } => Some(126),
            RuntimeError::ExecStart { reason } => {
                let r = reason.to_ascii_lowercase();
                Some(
                    if r.contains("permission denied") || r.contains("is a directory") {
                        126
                    } else if [
                        "not a directory",
                        "no such file or directory",
                        "executable file not found",
                    ]
                    .iter()
                    .any(|m| r.contains(m))
                    {
                        127
                    } else {
                        128
                    },
                )
            }
            _ => None,
        }
    }

    /// Docker's wording (containerd's, around runc's) for an exec whose process could not
    /// start, e.g. `OCI runtime exec failed: exec failed: unable to start container process:
    /// exec: "nope": executable file not found in $PATH: unknown`; `None` for other errors.
    pub fn oci_exec_message(&self) -> Option<String> {
        let why = match self {
            RuntimeError::ExecutableNotFound { name } => {
                format!("exec: \"{name}\": executable file not found in $PATH")
            }
            RuntimeError::ExecutableNotRunnable { name } => {
                format!("exec: \"{name}\": permission denied")
            }
            RuntimeError::ExecStart { reason } => reason.clone(),
            _ => return None,
        };
        Some(format!(
            "OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown"
        ))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
