//! Writing to stdout/stderr as docker does, and turning errors into docker's messages and exit
//! codes.

use std::io::Write;

/// An error whose message (possibly empty: already printed) and exit code are final.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u8,
    pub message: String,
}

impl StatusError {
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        StatusError {
            code,
            message: message.into(),
        }
        .into()
    }
}

/// Writes to stdout; a closed pipe (`berth images | head -1`) ends the process quietly.
pub fn out(text: &str) {
    write_or_exit(&mut std::io::stdout().lock(), text.as_bytes());
}

/// Writes to stderr.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn write_or_exit(w: &mut dyn Write, bytes: &[u8]) {
    if let Err(e) = w.write_all(bytes).and_then(|_| w.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// docker's wording for an error: `Error response from daemon: ...` for the daemon's answers,
/// the plain message otherwise (connection failures, usage errors).
pub fn describe_client_error(e: &berth_client::Error) -> String {
    match e {
        berth_client::Error::Api(api) => format!("Error response from daemon: {}", api.message),
        other => other.to_string(),
    }
}

/// The exit code and message for a command's failure.
pub fn describe_error(e: &anyhow::Error) -> (u8, String) {
    if let Some(status) = e.downcast_ref::<StatusError>() {
        return (status.code, status.message.clone());
    }
    if let Some(client) = e.downcast_ref::<berth_client::Error>() {
        return (1, describe_client_error(client));
    }
    (1, format!("{e:#}"))
}
