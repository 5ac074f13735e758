//! Opening a connection to the daemon, whatever carries it: a unix socket, tcp (with TLS
//! when configured), or an `ssh` process that runs `berth system dial-stdio` on the daemon's
//! host and relays the connection over its stdin and stdout. Plain requests and hijacked
//! streams (attach, exec) use the same connections; shutting down the write side half-closes
//! each kind (a FIN, a TLS close_notify then a FIN, ssh's stdin closed).

use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::tls::TlsConfig;
use crate::{Error, Host, Result};

/// A byte stream to the daemon, both ways.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The daemon's address and how to secure it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: Host,
    /// TLS on a tcp host.
    pub tls: Option<TlsConfig>,
}

/// The program run on the remote host of an `ssh://` daemon (`BERTH_SSH_REMOTE_COMMAND`
/// overrides it, e.g. `docker` for a host where berth is installed under that name).
fn remote_command() -> String {
    std::env::var("BERTH_SSH_REMOTE_COMMAND")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "berth".to_string())
}

impl Endpoint {
    /// Opens one connection.
    pub async fn connect(&self) -> Result<Box<dyn Io>> {
        let connect_error = |source| Error::Connect {
            host: self.host.to_string(),
            source,
        };
        Ok(match (&self.host, &self.tls) {
            (Host::Unix(path), _) => {
                Box::new(UnixStream::connect(path).await.map_err(connect_error)?)
            }
            (Host::Tcp(addr), None) => {
                let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            (Host::Tcp(addr), Some(tls)) => {
                let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                let name = crate::tls::server_name(addr)?;
                let connector = tokio_rustls::TlsConnector::from(tls.0.clone());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| Error::Http {
                        host: self.host.to_string(),
                        message: format!("TLS handshake failed: {e}"),
                    })?;
                Box::new(stream)
            }
            (Host::Ssh(spec), _) => Box::new(
                CommandConn::spawn("ssh", &spec.ssh_args(&remote_command()))
                    .map_err(connect_error)?,
            ),
        })
    }
}

/// A connection carried by a child process's stdin and stdout (docker's `commandconn`). Its
/// stderr is the user's: ssh's own messages (host key prompts, auth failures) show as they are.
pub struct CommandConn {
    stdout: ChildStdout,
    /// `None` once the write side was shut down: closing the pipe is the half-close.
    stdin: Option<ChildStdin>,
    /// Killed when the connection is dropped.
    _child: Child,
}

impl CommandConn {
    pub fn spawn(program: &str, args: &[String]) -> std::io::Result<CommandConn> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let missing = || std::io::Error::other("child process without pipes");
        Ok(CommandConn {
            stdout: child.stdout.take().ok_or_else(missing)?,
            stdin: Some(child.stdin.take().ok_or_else(missing)?),
            _child: child,
        })
    }
}

impl AsyncRead for CommandConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for CommandConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(stdin) = self.stdin.as_mut() {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}
