//! Hijacked connections (attach, exec start): the `101` answer, and the proxy between the
//! client's connection and a shim stream.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use berth_api::stream::{FrameDecoder, StreamKind, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Watches a client's stdin for the detach sequence, holding back a partial match.
#[derive(Debug, Default)]
pub(super) struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub(super) fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// The start of the sequence held back when the input ends: it was data.
    fn held(&self) -> &[u8] {
        &self.keys[..self.matched]
    }

    /// The bytes to forward, and whether the sequence was completed.
    pub(super) fn feed(&mut self, buf: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(buf.len());
        if self.keys.is_empty() {
            out.extend_from_slice(buf);
            return (out, false);
        }
        for &b in buf {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            if self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        (out, false)
    }
}

/// How the shim's output is turned into what the client asked for. An exec's stream format
/// follows the start request's `Tty`, the process's terminal the create request's (Docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reframe {
    /// As the shim sends it.
    Keep,
    /// Raw (pty) output sent as stdout frames.
    FrameAsStdout,
    /// Frames sent raw, stdout only (Docker attaches no stderr to a raw stream).
    StdoutOnly,
}

/// Proxies a hijacked client connection and a shim stream: shim output to the client until
/// it ends; client input (stdin) to the shim, half-closing it on the client's EOF, until the
/// detach sequence. Returns when the output ended or the client detached.
///
/// Both directions run at once (a process may write as much as it reads), each with its own
/// flow control: a full shim input waits without holding up the output and vice versa.
/// `detach` is only for a process with a tty (Docker's rule: without one, stdin is data and
/// any byte sequence must reach the process); pass it empty otherwise.
pub(super) async fn proxy<C>(
    client: C,
    shim: tokio::net::UnixStream,
    stdin: bool,
    detach: Vec<u8>,
    reframe: Reframe,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = shim.into_split();
    let mut scanner = DetachScanner::new(detach);
    // Returns true when the client typed the detach sequence.
    let input = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if stdin {
                        let held = scanner.held();
                        if !held.is_empty() {
                            let _ = sw.write_all(held).await;
                        }
                        let _ = sw.shutdown().await;
                    }
                    // Keep the write half alive until the output ends.
                    std::future::pending::<()>().await;
                }
                Ok(n) => {
                    let (fwd, detached) = scanner.feed(&buf[..n]);
                    if stdin && !fwd.is_empty() && sw.write_all(&fwd).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if detached {
                        return true;
                    }
                }
            }
        }
    };
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        let mut frames = FrameDecoder::new();
        let mut out = Vec::new();
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data: &[u8] = match reframe {
                Reframe::Keep => &buf[..n],
                Reframe::FrameAsStdout => {
                    out.clear();
                    encode_frame(StreamKind::Stdout, &buf[..n], &mut out);
                    &out
                }
                Reframe::StdoutOnly => {
                    out.clear();
                    frames.push(&buf[..n]);
                    while let Ok(Some((kind, payload))) = frames.next_frame() {
                        if kind == StreamKind::Stdout {
                            out.extend_from_slice(&payload);
                        }
                    }
                    &out
                }
            };
            if !data.is_empty() && cw.write_all(data).await.is_err() {
                break;
            }
            let _ = cw.flush().await;
        }
        let _ = cw.shutdown().await;
    };
    let detached = tokio::select! {
        d = input => d,
        () = output => false,
    };
    if !detached {
        // The output ended (the process exited) while the client may still be sending input
        // nobody will read. Closing a socket with unread input resets the connection, and the
        // client then fails reading the end of the output ("connection reset by peer") instead
        // of seeing EOF: take and drop its input until it closes (it does on the output's EOF).
        let drain = async {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_CLIENT_INPUT, drain).await;
    }
}

/// A hijacked connection, whatever carries it.
pub(super) trait Duplex:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// How long a process's start waits for its client to read the `101`, at most.
const HEAD_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The client's end of an upgraded connection, returned once the client has *read* the
/// `101` (on a UNIX socket: nothing of ours left in its receive queue), or after
/// [`HEAD_READ_WAIT`]. Why: docker-py reads the head through a buffered reader and then the
/// raw socket; output that reached the socket before that read is swallowed with the head and
/// lost (`exec_run` returned `b""`: Berth's execs start within a millisecond of the `101`,
/// dockerd's only after containerd and runc have run). Bytes the client sent after its
/// request (hyper may have read some) come first.
pub(super) async fn client_after_head(upgraded: hyper::upgrade::Upgraded) -> Box<dyn Duplex> {
    use hyper_util::rt::TokioIo;
    let parts = match upgraded.downcast::<TokioIo<tokio::net::UnixStream>>() {
        Ok(parts) => parts,
        // TCP and TLS: the peer's kernel acknowledges, which says nothing about its reads.
        Err(other) => return Box::new(TokioIo::new(other)),
    };
    let stream = parts.io.into_inner();
    let started = std::time::Instant::now();
    while unread_by_peer(&stream) > 0 && started.elapsed() < HEAD_READ_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let (read, write) = stream.into_split();
    let read = std::io::Cursor::new(parts.read_buf).chain(read);
    Box::new(tokio::io::join(read, write))
}

/// Bytes written to a UNIX stream socket that its peer has not read yet (`SIOCOUTQ`); 0 when
/// unknown.
fn unread_by_peer(stream: &tokio::net::UnixStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which points at a live
    // c_int; the descriptor is the stream's own, open for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc == 0 { queued } else { 0 }
}

/// How long a client's unread input is taken after the output ended, at most.
const DRAIN_CLIENT_INPUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn to_tokio(
    s: std::os::unix::net::UnixStream,
) -> std::io::Result<tokio::net::UnixStream> {
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

pub(super) fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"))
}

/// The `101` answer. hyper writes and flushes it before the upgraded connection is handed
/// over, and the stream's first bytes are written only after that: a client that reads the
/// head with a large buffer (docker-py parses it with its HTTP reader and then reads the raw
/// socket) never finds output in the same read.
pub(super) fn switching(content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_scanner_holds_back_partial_matches() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.held(), b"\x10");
        assert_eq!(s.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10\x11rest"), (b"\x10".to_vec(), true));
        let mut none = DetachScanner::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
        assert!(none.held().is_empty());
    }
}
